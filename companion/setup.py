# -*- coding: utf-8 -*-
"""senaite-sync-receiver: the destination add-on of senaite-sync (see PROTOCOL.md)."""
from setuptools import find_packages
from setuptools import setup

setup(
    name="senaite-sync-receiver",
    version="0.3.0",
    description="Receiver routes for senaite-sync on a destination SENAITE 2.x site",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="GPLv2",
    packages=find_packages(exclude=["tests"]),
    include_package_data=True,
    package_data={"senaite_sync_receiver": ["*.zcml"]},
    zip_safe=False,
    install_requires=["setuptools", "senaite.jsonapi"],
    entry_points={
        "z3c.autoinclude.plugin": ["target = plone"],
    },
)
