"""/docs: the OpenAPI document as Swagger UI, served from the assets the
`swagger-ui-py` package ships (no CDN: it works offline)."""

import mimetypes
from functools import cache
from importlib.resources import files
from typing import Literal

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
