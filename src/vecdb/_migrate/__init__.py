"""The migration engine: migration classes, sources, state, lock and steps."""
