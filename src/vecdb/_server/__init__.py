"""The server side: connecting, the pool, the embedded server, wire codecs."""
