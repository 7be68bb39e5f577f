"""vecdb's bundled migrations (source ``"vecdb"``), one module per version.

Each module defines one `vecdb.Migration` subclass. They are applied at
``connect()`` before the application's own sources, under the same lock.
"""
