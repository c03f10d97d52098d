"""config.wsgi with collectstatic's files served by WhiteNoise, for gunicorn in the image.

The image has no other web server; outside it, serve STATIC_ROOT at STATIC_URL from the web
server in front of the application instead.
"""

from django.conf import settings
from whitenoise import WhiteNoise

from config.wsgi import application as django_application

application = WhiteNoise(django_application, root=settings.STATIC_ROOT, prefix=settings.STATIC_URL)
