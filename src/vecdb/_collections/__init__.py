"""Collections: the typed table API, its catalog, writes and index builds."""
