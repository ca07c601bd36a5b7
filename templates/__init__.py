"""Jinja2 templates for HTML and Markdown reports (installed as memlint.templates)."""
