"""authapi: JWT login, rotating refresh and revocation for async Django, on Redis."""
