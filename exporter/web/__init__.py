"""HTTP server pieces: `--web.config.file` (TLS, basic auth, headers) and its aiohttp middleware."""
