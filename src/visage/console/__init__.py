"""The web console: see, search and review faces in a browser (docs/console.md).

Served by ``visage serve`` at ``/console/``, on the API's port. Pages are rendered on
the server from Jinja2 templates, with a little plain JavaScript; every asset ships
in this package. The console works through the service with the signed-in key as the
caller, so the API's checks and audit log apply to it too.

- :mod:`~visage.console.app`: the app, its guards (session, CSRF) and what handlers share;
- :mod:`~visage.console.sessions`: the signed session cookie, CSRF tokens, the sign-in rate limit;
- :mod:`~visage.console.signing`: signing in and out;
- :mod:`~visage.console.collections`: collections, their faces, users, tags and thumbnails;
- :mod:`~visage.console.images`: Index, Detect and Compare;
- :mod:`~visage.console.review`: Search with human review;
- :mod:`~visage.console.audit`: the audit log, filtered, paged and downloaded;
- :mod:`~visage.console.keys`: access keys, for keys allowed ``visage:ManageKeys``;
- :mod:`~visage.console.accuracy`: the Accuracy page and a Similarity in words;
- :mod:`~visage.console.pictures`: what a page shows of an uploaded image.
"""

from visage.console.app import console_app

__all__ = ["console_app"]
