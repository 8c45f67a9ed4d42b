"""Mapper: model import, dense-to-sparse (Monarch), placement, scheduling, encoding, cost model."""
