"""The LRS's transactional store (documents, accepted statement ids): SQLite or PostgreSQL.

Contracts in :mod:`schemas.lrs_store`; the connection in :mod:`producers.lrsstore.database`.
"""
