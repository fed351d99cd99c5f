"""The chat page links to the pages mounted beside it (the ads studio, search), in headless Chromium.

The server renders the links from the ``pages`` it was handed (it never imports ads or search); a server
with no pages shows none. Skips when chromium is absent (``apt-get install -y chromium``)."""

from __future__ import annotations

import httpx
import pytest
from browser_helpers import chromium, needs_chromium
from serve_helpers import ServerThread, make_tokenizer, micro_model

from murmur.engine import Engine
from murmur.serve.app import create_app


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def _engine(tok) -> Engine:
    return Engine(micro_model(tok.vocab_size), tok, max_batch=1, name="m")


def test_links_are_rendered_from_the_mounted_pages(tmp_path, tok):
    ads, other = tmp_path / "ads", tmp_path / "other"
    ads.mkdir()
    other.mkdir()
    (ads / "index.html").write_text("<html><head><title>murmur ads studio</title></head><body>studio</body></html>")
    (other / "index.html").write_text("<p>no title</p>")
    app = create_app(_engine(tok), pages={"/ads": ads, "search<x>": other})
    with ServerThread(app) as url:
        html = httpx.get(url + "/").text
        assert '<a href="/ads/">Ads studio</a>' in html
        assert '<a href="/search&lt;x&gt;/">Search&lt;x&gt;</a>' in html  # escaped, named by its prefix
    with ServerThread(create_app(_engine(tok))) as url:
        assert '<nav id="pages" aria-label="Pages"></nav>' in httpx.get(url + "/").text


@pytest.mark.slow
@needs_chromium
def test_chat_page_links_to_the_ads_studio_and_search(tok):
    from murmur.ads.router import WEB_DIR as ADS_WEB
    from murmur.search.router import WEB_DIR as SEARCH_WEB

    app = create_app(_engine(tok), pages={"/ads": ADS_WEB, "/search": SEARCH_WEB})
    with ServerThread(app) as url, chromium() as ctx:
        page = ctx.new_page()
        page.goto(url + "/")
        links = page.locator("#pages a")
        assert links.all_inner_texts() == ["Ads studio", "Search"]
        assert page.locator("#pages").is_visible()
        links.nth(0).click()
        page.wait_for_url(url + "/ads/")
        assert page.title() == "murmur ads studio"
        page.goto(url + "/")
        page.locator("#pages a", has_text="Search").click()
        page.wait_for_url(url + "/search/")
        assert page.title() == "murmur search"
    # a server with nothing mounted shows no links
    with ServerThread(create_app(_engine(tok))) as url, chromium() as ctx:
        page = ctx.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#sidebar")
        assert page.locator("#pages a").count() == 0 and not page.locator("#pages").is_visible()
