//! Synthetic sites of any size for benchmarks and scale tests: real records of a base site (the
//! demo snapshot, extracted from a real SENAITE 2.6) are cloned with new UIDs, ids and paths into
//! clients with contacts, samples and four analyses per sample, keeping SENAITE's shapes, field
//! sets, review histories and references to the base site's setup. Deterministic: the same base
//! and size give the same site.

use serde_json::Value;

use crate::sandbox::data::{SiteData, SiteObject};

/// Analyses per synthetic sample.
const ANALYSES_PER_SAMPLE: usize = 4;
/// Samples per synthetic client.
const SAMPLES_PER_CLIENT: usize = 100;

/// A site of `total` objects: the base site's objects, plus synthetic clients, contacts, samples
/// and analyses. Returns the base unchanged when it lacks a template type or is already larger.
pub fn synthesize(base: &SiteData, total: usize) -> SiteData {
    let template = |pt: &str| {
        base.objects
            .iter()
            .find(|o| o.record["portal_type"] == pt)
            .cloned()
    };
    let (Some(client), Some(contact), Some(sample), Some(analysis)) = (
        template("Client"),
        template("Contact"),
        template("AnalysisRequest"),
        template("Analysis"),
    ) else {
        return base.clone();
    };
    let mut site = base.clone();
    let clients_root = parent_path(&client);
    let mut n = 0u64;
    let mut next_uid = || {
        n += 1;
        // splitmix64 is a bijection: unique, uniformly spread uids (as real ones are).
        format!("{:016x}{:016x}", splitmix64(n), splitmix64(n ^ 0x5eed))
    };
    let mut c = 0usize;
    while site.objects.len() < total {
        c += 1;
        let client_path = format!("{clients_root}/synth-client-{c}");
        let client_uid = next_uid();
        site.objects.push(clone_as(
            &client,
            &client_uid,
            &client_path,
            &format!("Synthetic client {c}"),
            c,
        ));
        for k in 1..=2 {
            let uid = next_uid();
            let p = format!("{client_path}/contact-{k}");
            site.objects.push(clone_as(
                &contact,
                &uid,
                &p,
                &format!("Contact {k} of client {c}"),
                c,
            ));
        }
        for s in 1..=SAMPLES_PER_CLIENT {
            if site.objects.len() >= total {
                break;
            }
            let sample_uid = next_uid();
            let sp = format!("{client_path}/S{c:04}-{s:04}");
            site.objects.push(clone_as(
                &sample,
                &sample_uid,
                &sp,
                &format!("S{c:04}-{s:04}"),
                s,
            ));
            for a in 1..=ANALYSES_PER_SAMPLE {
                let uid = next_uid();
                let ap = format!("{sp}/analysis-{a}");
                site.objects
                    .push(clone_as(&analysis, &uid, &ap, &format!("Analysis {a}"), a));
            }
        }
    }
    site.objects.truncate(total.max(base.objects.len()));
    site
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn parent_path(o: &SiteObject) -> String {
    o.record["parent_path"]
        .as_str()
        .unwrap_or("/senaite/clients")
        .to_string()
}

fn clone_as(t: &SiteObject, uid: &str, path: &str, title: &str, seq: usize) -> SiteObject {
    let mut o = t.clone();
    let (parent, id) = path.rsplit_once('/').unwrap_or(("", path));
    let origin = o.record["url"]
        .as_str()
        .and_then(|u| u.find("/senaite").map(|i| u[..i].to_string()))
        .unwrap_or_default();
    if let Value::Object(r) = &mut o.record {
        r.insert("uid".into(), Value::from(uid));
        r.insert("UID".into(), Value::from(uid));
        r.insert("id".into(), Value::from(id));
        r.insert("getId".into(), Value::from(id));
        r.insert("title".into(), Value::from(title));
        r.insert("path".into(), Value::from(path));
        r.insert("parent_path".into(), Value::from(parent));
        r.insert(
            "parent_id".into(),
            Value::from(parent.rsplit('/').next().unwrap_or("")),
        );
        r.insert("url".into(), Value::from(format!("{origin}{path}")));
        // Distinct creation times keep the `created` sort stable, as on a real site.
        let created = format!(
            "2025-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
            seq % 12 + 1,
            seq % 28 + 1,
            seq % 24,
            seq % 60,
            (seq / 60) % 60
        );
        r.insert("created".into(), Value::from(created));
    }
    if let Some(Value::Object(rest)) = &mut o.restapi {
        rest.insert("UID".into(), Value::from(uid));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(pt: &str, path: &str) -> SiteObject {
        SiteObject {
            record: json!({"portal_type": pt, "uid": "x", "path": path,
                "parent_path": "/senaite/clients", "url": format!("http://h:1{path}")}),
            catalog: Some("c".into()),
            v1_error: None,
            restapi: None,
            history: None,
            sharing: None,
        }
    }

    #[test]
    fn synthesizes_exactly_the_size_asked_with_unique_uids() {
        let base = SiteData {
            objects: vec![
                obj("Client", "/senaite/clients/client-1"),
                obj("Contact", "/senaite/clients/client-1/contact-1"),
                obj("AnalysisRequest", "/senaite/clients/client-1/W-1"),
                obj("Analysis", "/senaite/clients/client-1/W-1/Ca"),
            ],
            ..SiteData::default()
        };
        let site = synthesize(&base, 1234);
        assert_eq!(site.objects.len(), 1234);
        let uids: std::collections::BTreeSet<&str> = site
            .objects
            .iter()
            .map(|o| o.record["uid"].as_str().unwrap())
            .collect();
        assert_eq!(uids.len(), 1234 - 3, "template uids are all \"x\"");
        let again = synthesize(&base, 1234);
        assert_eq!(again.objects[700].record, site.objects[700].record);
    }
}
