"""Builds the catalog's handlers from its adapters, in one place, for both roles."""
from services.catalog.handlers import Catalog
from services.catalog.store import CatalogStore
from services.common import mongo
from services.common.config import settings


def build_catalog(load=False):
    mongo.connect("catalog")
    catalog = Catalog(CatalogStore())
    if load:  # the api role seeds from the data files at start
        catalog.load(settings().catalog_data)
    return catalog
