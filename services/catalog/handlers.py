"""Catalog use cases; no framework here, the store is passed in."""
from services.catalog import domain
from services.catalog.store import read_data_dir


class Catalog:
    def __init__(self, store):
        self.store = store

    def load(self, data_dir):
        """Seed from the data files: departments are upserted; a package version is added once and
        never changed afterwards (publish a new version to change it). Returns versions added."""
        departments, packages = read_data_dir(data_dir)
        for code, name in departments.items():
            self.store.save_department(code, name)
        known = self.store.departments()
        added = []
        for pkg in packages:
            domain.validate_package(pkg, known)
            if self.store.add_version(pkg):
                added.append((pkg["code"], int(pkg["version"])))
        return added

    def get_package(self, code, region_code):
        domain.check_region(region_code)
        pkg = self.store.latest_published(code)
        if pkg is None:
            raise domain.not_found(code, region_code)
        return domain.resolve(pkg, region_code, self.store.departments())

    def list_packages(self, region_code):
        domain.check_region(region_code)
        departments = self.store.departments()
        return [domain.resolve(p, region_code, departments) for p in self.store.all_latest_published()]
