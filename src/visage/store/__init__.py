"""Persistence of collections, faces, users, tags, request tokens and the audit log.

:mod:`visage.store.base` defines the interface; :mod:`visage.store.sqlite` is the
embedded default.
"""
