"""The web console's server side: session cookies and CSRF (``auth``), Jinja2 rendering
(``web``), server-side SVG charts (``charts``) and display helpers (``present``).

Routes live in ``server/routes/console.py`` (pages) and ``server/routes/users.py`` (the
JSON API for users, sessions and human decisions); templates in ``server/templates`` and
the one stylesheet in ``server/static``. No front-end build, no CDN, no JS framework.
"""
