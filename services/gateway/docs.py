"""/docs: the OpenAPI document as Swagger UI, served from the assets the
`swagger-ui-py` package ships (no CDN: it works offline); /docs/events: the event
catalogue, the Markdown made from the AsyncAPI document rendered as a page."""

import html
import mimetypes
from functools import cache
from importlib.resources import files
from typing import Literal

from markdown_it import MarkdownIt
from pydantic import BaseModel
from werkzeug.wrappers import Response

# The files the page loads, all from the package.
AssetName = Literal["swagger-ui.css", "index.css", "swagger-ui-bundle.js", "favicon-32x32.png"]
ASSETS = files("swagger_ui") / "static"

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>JV Pharma Registry API</title>
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
  <link rel="stylesheet" href="{assets}/index.css">
  <link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "{document}", dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""


CATALOGUE_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <style>
    body {{ font-family: sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }}
    table {{ border-collapse: collapse; }}
    th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }}
    pre {{ background: #f6f6f6; padding: 0.75rem; overflow-x: auto; }}
  </style>
</head>
<body>
{body}
</body>
</html>
"""


class Asset(BaseModel):
    asset: AssetName


def page(document_url: str, assets_url: str) -> Response:
    return Response(PAGE.format(document=document_url, assets=assets_url), content_type="text/html")


@cache
def _content(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def asset(name: str) -> Response:
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = Response(_content(name), content_type=content_type)
    # The package's version fixes the files: a browser may keep them for a day.
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@cache
def catalogue_page(catalogue: str) -> Response:
    """The event catalogue (CommonMark with tables) as HTML; the Markdown is generated
    by the registry itself, and raw HTML in it is escaped all the same."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(catalogue)
    title = html.escape("JV Pharma Registry events")
    return Response(CATALOGUE_PAGE.format(title=title, body=body), content_type="text/html")
