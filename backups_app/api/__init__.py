"""The HTTP API under /api/: everything the admin does, through the same services, with the same
permissions, for scripts holding a token (Django REST framework; schema by drf-spectacular)."""
