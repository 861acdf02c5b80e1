"""The catalog's MongoDB store (database `<prefix>catalog`) and the loader of the seed data files."""
import glob
import os

import mongoengine as me
import yaml

from services.common.mongo import plain

ALIAS = "catalog"


class PackageVersion(me.Document):
    meta = {"db_alias": ALIAS, "collection": "packages",
            "indexes": [{"fields": ["code", "version"], "unique": True}]}
    code = me.StringField(required=True)
    version = me.IntField(required=True)
    status = me.StringField(default="published")  # draft | published | retired
    body = me.DictField(required=True)


class Department(me.Document):
    meta = {"db_alias": ALIAS, "collection": "departments"}
    code = me.StringField(primary_key=True)
    name = me.StringField(required=True)


def read_data_dir(path):
    """(departments, packages) from the YAML files operators edit."""
    with open(os.path.join(path, "departments.yaml"), encoding="utf-8") as fh:
        departments = yaml.safe_load(fh)
    packages = []
    for name in sorted(glob.glob(os.path.join(path, "packages", "*.yaml"))):
        with open(name, encoding="utf-8") as fh:
            packages.append(yaml.safe_load(fh))
    return departments, packages


class CatalogStore:
    def departments(self):
        return {d.code: d.name for d in Department.objects}

    def save_department(self, code, name):
        Department.objects(code=code).update_one(set__name=name, upsert=True)

    def has_version(self, code, version):
        return PackageVersion.objects(code=code, version=version).count() > 0

    def add_version(self, pkg, status="published"):
        try:
            PackageVersion(code=pkg["code"], version=int(pkg["version"]), status=status, body=pkg).save()
        except me.NotUniqueError:
            return False
        return True

    def latest_published(self, code):
        doc = PackageVersion.objects(code=code, status="published").order_by("-version").first()
        return plain(doc.body) if doc else None

    def all_latest_published(self):
        latest = {}
        for doc in PackageVersion.objects(status="published").order_by("version"):
            latest[doc.code] = plain(doc.body)
        return list(latest.values())
