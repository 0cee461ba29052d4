"""The registry's web pages, served by the gateway: server-rendered Jinja2 templates,
a stylesheet of its own (no CDN, no front-end build), sessions kept server-side and
CSRF tokens tied to them. The routes are services/gateway/routes/web.py."""
