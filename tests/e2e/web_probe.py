"""Use the gateway's web pages in headless Chromium (Debian's, no browser download) as
an investor and a regulator would, and report, as one JSON object, what they saw: run
as its own process, since the test process is monkey-patched by eventlet, which
Playwright's event loop does not survive. Takes a screenshot of each page at phone and
desktop width into the directory given.

    python web_probe.py '{"url": ..., "investor_key": ..., "regulator_key": ...,
                          "venture_name": ..., "licence_id": ..., "screenshots": DIR}'
"""

import json
import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# The live feed refreshes every 5 s; this leaves room for a slow index.
FEED_TIMEOUT_MS = 30_000


class Probe:
    def __init__(self, scenario: dict):
        self.url = scenario["url"]
        self.scenario = scenario
        self.shots = Path(scenario["screenshots"])
        self.shots.mkdir(parents=True, exist_ok=True)
        self.seen: dict = {"errors": [], "requested": [], "screenshots": []}

    def page(self, browser) -> Page:
        page = browser.new_context(viewport=DESKTOP).new_page()
        page.on("pageerror", lambda error: self.seen["errors"].append(str(error)))
        page.on("request", lambda request: self.seen["requested"].append(request.url))
        return page

    def screenshot(self, page: Page, name: str) -> None:
        """The page as it is now, at desktop and at phone width."""
        for width, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(size)
            path = self.shots / f"{name}-{width}.png"
            page.screenshot(path=str(path), full_page=True)
            self.seen["screenshots"].append(path.name)
        page.set_viewport_size(DESKTOP)

    def investor(self, browser) -> dict:
        page = self.page(browser)
        seen: dict = {}
        page.goto(f"{self.url}/")
        seen["home_links"] = page.locator("main a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
        self.screenshot(page, "home")

        page.goto(f"{self.url}/sign-in")
        page.fill("#api_key", "jvk_not-a-key-of-this-registry-at-all")
        with page.expect_navigation() as refused:
            page.click("button[type=submit] >> text=Sign in")
        seen["wrong_key"] = {
            "status": refused.value.status,
            "error": page.locator("#api_key-error").inner_text(),
            "invalid": page.get_attribute("#api_key", "aria-invalid"),
        }
        self.screenshot(page, "sign-in")

        page.fill("#api_key", self.scenario["investor_key"])
        with page.expect_navigation():
            page.click("button[type=submit] >> text=Sign in")
        seen["landed"] = page.url.removeprefix(self.url)
        seen["ventures"] = page.locator("main table tbody th").all_inner_texts()
        cookies = page.context.cookies()
        seen["cookies"] = [
            {key: cookie[key] for key in ("name", "value", "httpOnly", "sameSite", "secure")}
            for cookie in cookies
        ]
        self.screenshot(page, "ventures")

        with page.expect_navigation():
            page.click(f"text={self.scenario['venture_name']}")
        seen["venture_heading"] = page.locator("h1").inner_text()
        seen["venture_chart"] = page.locator("figure.chart svg title").all_text_contents()
        self.screenshot(page, "venture")

        for name in ("plants", "licences"):
            page.goto(f"{self.url}/{name}")
            seen[name] = page.locator("main table tbody tr").count()
            self.screenshot(page, name)

        page.goto(f"{self.url}/investments")
        seen["charts"] = page.locator("figure.chart svg title").all_text_contents()
        seen["chart_bars"] = page.locator("figure.chart svg rect.bar").count()
        seen["chart_tables"] = [
            table.locator("tbody tr").all_inner_texts()
            for table in page.locator("figure.chart + .table-wrap table").all()
        ]
        self.screenshot(page, "investments")

        with page.expect_navigation():
            page.click("text=Sign out")
        seen["signed_out_at"] = page.url.removeprefix(self.url)
        page.goto(f"{self.url}/ventures")
        seen["after_sign_out"] = page.url.removeprefix(self.url)
        return seen

    def regulator(self, browser) -> dict:
        """Keyboard only: Tab to a field, type, Enter to send the form."""
        page = self.page(browser)
        keys = page.keyboard
        seen: dict = {}
        licence_path = f"/licences/{self.scenario['licence_id']}"

        page.goto(f"{self.url}/sign-in")
        page.evaluate("document.activeElement.blur()")  # start from the page, not the field
        seen["tabs_to_key"] = self.tab_to(page, "api_key")
        keys.type(self.scenario["regulator_key"])
        with page.expect_navigation():
            keys.press("Enter")
        seen["landed"] = page.url.removeprefix(self.url)
        inspection = page.locator("section[aria-labelledby=inspection_scheduled-heading]")
        seen["awaiting"] = inspection.locator("a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
        seen["age_groups"] = inspection.locator("h3").all_inner_texts()

        # The workbench stays open in a page of its own: its feed should show the grant.
        decision = page.context.new_page()
        decision.goto(f"{self.url}{licence_path}")
        decision.evaluate("document.activeElement.blur()")
        self.tab_to(decision, "to")
        keys = decision.keyboard
        keys.type("granted")  # a select takes the option whose label is typed
        self.tab_to(decision, "reason")
        keys.type("inspection of the plant found it GMP-compliant")
        with decision.expect_navigation() as refused:
            keys.press("Enter")
        seen["refused"] = {
            "status": refused.value.status,
            "decision_ref_error": decision.locator("#decision_ref-error").inner_text(),
            "invalid": decision.get_attribute("#decision_ref", "aria-invalid"),
            "kept_reason": decision.input_value("#reason"),
            "summary": decision.locator(".error-summary").inner_text(),
        }
        self.screenshot(decision, "licence-refused")

        self.tab_to(decision, "decision_ref")
        decision.keyboard.type("DRAP/LIC/2026/0412")
        with decision.expect_navigation() as granted:
            decision.keyboard.press("Enter")
        seen["granted"] = {
            "status": granted.value.status,
            "at": decision.url.removeprefix(self.url),
            "licence_status": decision.locator("#licence-status").inner_text(),
            "history": decision.locator("ol.timeline li strong").all_inner_texts(),
        }
        self.screenshot(decision, "licence")

        fed = page.locator(f"#feed a[href='{licence_path}']")
        fed.wait_for(timeout=FEED_TIMEOUT_MS)
        seen["feed"] = page.locator("#feed li").first.inner_text()
        page.reload()
        self.screenshot(page, "workbench")
        return seen

    @staticmethod
    def tab_to(page: Page, element_id: str, most: int = 40) -> int:
        """Press Tab until the element has the focus; how many presses it took."""
        for presses in range(1, most + 1):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return presses
        raise AssertionError(
            f"#{element_id} never took the focus in {most} Tabs on {page.url}: "
            + page.locator("main").inner_text()[:500]
        )

    def run(self) -> dict:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
            )
            try:
                self.seen["investor"] = self.investor(browser)
                self.seen["regulator"] = self.regulator(browser)
            finally:
                browser.close()
        return self.seen


if __name__ == "__main__":
    print(json.dumps(Probe(json.loads(sys.argv[1])).run()))
