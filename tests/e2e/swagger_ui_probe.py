"""Open the gateway's /docs in headless Chromium (Debian's, no browser download) and
report, as one JSON line, what a reader sees: run as its own process, since the test
process is monkey-patched by eventlet, which Playwright's event loop does not survive.

    python swagger_ui_probe.py http://127.0.0.1:8000
"""

import json
import sys

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
OPERATION = "Register a joint venture"


def probe(base_url: str) -> dict:
    requested: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
        )
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base_url}/docs")
            summary = page.get_by_text(OPERATION, exact=True)
            summary.wait_for(timeout=30_000)
            summary.click()
            operation = page.locator("#operations-ventures-register_venture")
            operation.locator(".opblock-body").wait_for(timeout=10_000)
            return {
                "title": page.title(),
                "operations": page.locator(".opblock").count(),
                "expanded": operation.locator(".opblock-body").inner_text(),
                "requested": requested,
                "errors": errors,
            }
        finally:
            browser.close()


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
