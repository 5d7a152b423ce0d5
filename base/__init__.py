"""The base layer: settings, the error root, HTTP helpers, SQL, the Redis client, clock, ids, fields,
metrics and logs. It imports no package of LiveCart's own; every other package may import it."""
