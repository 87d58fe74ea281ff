"""The explorer's page in a real headless Chromium (Debian's ``chromium``, driven by Playwright with
the system executable; no browser download): the head and model views draw the right tokens, layers
and heads, a hovered weight is the API's number, the stepper adds a token, cross-attention, beams,
vision and every idea panel render, bad input is a one-line message after which the page still
works, a static export renders with networking off, the page fetches nothing but its own server, and
the console stays clean. Screenshots of every view and idea panel go to ``test-artifacts/explore``
(or ``$ATTENTIVE_TEST_ARTIFACTS/explore``)."""

from __future__ import annotations

from explore_support import LM_TEXT, SOURCE_TEXT, IDEAS, Page, digit_png, post, tone_wav


def _weights(server: str, family: str, analysis: str, stack: str, layer: int) -> dict:
    status, block = post(
        f"{server}/{family}",
        "attention",
        {"id": analysis, "stack": stack, "layer": layer, "q0": 0, "k0": 0, "q1": None, "k1": None},
    )
    assert status == 200, block
    return block


# ----------------------------------------------------------------------------- language model


def test_lm_head_and_model_views(server, page, lm):
    page.open(f"{server}/lm/")
    page.rendered("head")  # the example text runs on load
    page.run_text(LM_TEXT)
    page.rendered("head", 2)
    canvas = page.page.locator("#head-canvas")
    assert canvas.get_attribute("data-tokens") == str(len(LM_TEXT))
    assert (canvas.get_attribute("data-layers"), canvas.get_attribute("data-heads")) == ("2", "4")
    assert canvas.get_attribute("data-drawn-rows") == str(len(LM_TEXT))
    page.page.select_option("#head-head", "1")
    point = page.page.evaluate("AX.views.head.tokenPoint('q', 10)")
    box = canvas.bounding_box()
    page.page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
    page.wait("#tooltip:not([hidden]) li")
    first = page.page.locator("#tooltip li").first
    key, weight = int(first.get_attribute("data-key")), float(first.get_attribute("data-weight"))
    analysis = page.page.get_attribute("body", "data-analysis")
    block = _weights(server, "lm", analysis, "stack", 0)
    assert weight == block["weights"][1][10][key]  # the hovered number is the API's, exactly
    assert weight == max(block["weights"][1][10])  # and the strongest link is listed first
    assert page.page.locator("#tooltip").get_attribute("data-index") == "10"
    page.shot("lm-head-view")

    page.tab("model")
    page.rendered("model")
    grid = page.page.locator("#model-grid")
    assert page.page.locator("#model-grid canvas.thumb").count() == 2 * 4
    assert (grid.get_attribute("data-layers"), grid.get_attribute("data-heads")) == ("2", "4")
    assert grid.get_attribute("data-tokens") == str(len(LM_TEXT))
    page.shot("lm-model-view")
    heads_drawn = page.count("head")
    page.page.click("#model-grid canvas.thumb[data-layer='1'][data-head='2']")  # opens that head
    page.rendered("head", heads_drawn + 1)
    assert (canvas.get_attribute("data-layer"), canvas.get_attribute("data-head")) == ("1", "2")
    page.check_clean(server)


def test_lm_stepper_and_logit_lens(server, page):
    page.open(f"{server}/lm/")
    page.rendered("head")
    page.page.fill("#text", LM_TEXT)
    page.tab("generate")
    page.page.fill("#gen-seed", "4")
    page.page.click("#gen-start")
    page.wait("#gen-tokens[data-count]")
    start = int(page.page.get_attribute("#gen-tokens", "data-count"))
    assert start == len(LM_TEXT)
    for step in range(1, 4):
        page.page.click("#gen-step")
        page.rendered("generate", step)
        assert int(page.page.get_attribute("#gen-tokens", "data-count")) == start + step  # one token a step
        assert page.page.get_attribute("#gen-attention", "data-keys") == str(start + step)
    bars = page.page.locator("#gen-bars .bar-row")
    assert bars.count() >= 10 and page.page.locator("#gen-bars .bar-row.chosen").count() == 1
    page.shot("lm-generate")

    page.tab("lens")
    page.rendered("lens")
    assert page.page.locator("#lens-table tr[data-layer]").count() == 2
    page.page.click("#lens-tokens .chip[data-index='3']")
    page.rendered("lens", 2)
    assert "Position 3" in page.page.inner_text("#lens-table caption")
    page.shot("lm-logit-lens")
    page.check_clean(server)


def test_every_idea_panel_renders_with_its_numbers(server, page):
    page.open(f"{server}/lm/")
    page.rendered("head")
    page.run_text(LM_TEXT)
    page.tab("ideas")
    for name in IDEAS:
        page.rendered(f"idea-{name}")
    assert page.page.get_attribute("#idea-embedding .verdict", "data-equal") == "true"
    assert float(page.page.get_attribute("#idea-attention_steps .verdict", "data-difference")) < 1e-5
    assert float(page.page.get_attribute("#idea-masks .verdict", "data-masked")) == 0.0
    off, on = page.page.locator("#idea-permutation .verdict").all()
    assert float(off.get_attribute("data-difference")) < 1e-4 < float(on.get_attribute("data-difference"))
    for name in IDEAS:
        page.shot(f"idea-{name.replace('_', '-')}", f"#idea-{name}")
    page.page.select_option("#idea-attention_steps select[aria-label='head']", "3")  # another head, same query
    page.rendered("idea-attention_steps", 2)
    assert "head 3" in page.page.inner_text("#idea-attention_steps .idea-body")
    page.check_clean(server)


# ----------------------------------------------------------------------------- translation, vision, speech


def test_translation_views(server, page, translation):
    page.open(f"{server}/translation/")
    page.rendered("head")
    page.run_text(SOURCE_TEXT)
    page.rendered("head", 2)
    canvas = page.page.locator("#head-canvas")
    assert canvas.get_attribute("data-tokens") == str(len(SOURCE_TEXT))
    assert (canvas.get_attribute("data-layers"), canvas.get_attribute("data-heads")) == ("2", "4")
    options = page.page.locator("#head-stack option")
    assert [options.nth(i).get_attribute("value") for i in range(options.count())] == ["encoder", "decoder", "cross"]
    page.shot("translation-head-view")

    page.tab("model")
    page.rendered("model")
    page.page.select_option("#model-stack", "decoder")
    page.rendered("model", 2)
    assert page.page.locator("#model-grid canvas.thumb").count() == 3 * 4

    page.tab("cross")
    page.rendered("cross")
    analysis = page.page.get_attribute("body", "data-analysis")
    status, summary = post(f"{server}/translation", "analyze", {"text": SOURCE_TEXT})
    cross = next(s for s in summary["stacks"] if s["name"] == "cross")
    el = page.page.locator("#cross-canvas")
    assert el.get_attribute("data-rows") == str(len(cross["q_tokens"]))
    assert el.get_attribute("data-cols") == str(len(SOURCE_TEXT))
    lay = page.page.evaluate("AX.views.cross.layout")
    box = el.bounding_box()
    row, col = 1, 3
    page.page.mouse.move(
        box["x"] + lay["labelW"] + (col + 0.5) * lay["cell"], box["y"] + lay["top"] + (row + 0.5) * lay["rowH"]
    )
    page.wait("#cross-tip:not([hidden])")
    tip = page.page.locator("#cross-tip")
    assert (tip.get_attribute("data-row"), tip.get_attribute("data-col")) == ("1", "3")
    status, block = post(
        f"{server}/translation",
        "attention",
        {"id": analysis, "stack": "cross", "layer": 2, "head": "mean", "q0": 0, "k0": 0},
    )
    assert status == 200 and el.get_attribute("data-layer") == "2"
    assert float(tip.get_attribute("data-weight")) == block["weights"][0][row][col]
    page.shot("translation-cross-attention")

    page.tab("beams")
    page.rendered("beams")
    assert page.page.get_attribute("#beams-table table", "data-steps") == str(len(summary["beams"]))
    page.shot("translation-beams")
    page.check_clean(server)


def test_vision_view_from_an_upload_and_a_drawing(server, page, tmp_path):
    image = tmp_path / "digit.png"
    image.write_bytes(digit_png())
    page.open(f"{server}/vision/")
    page.page.set_input_files("#file", str(image))
    page.rendered("head")
    canvas = page.page.locator("#head-canvas")
    assert canvas.get_attribute("data-tokens") == "17" and canvas.get_attribute("data-layers") == "3"
    page.tab("vision")
    page.rendered("vision")
    assert page.page.get_attribute("#vision-canvas", "data-grid") == "4"
    page.page.select_option("#vision-map", "2")
    page.rendered("vision", 2)
    page.shot("vision")
    analysis = page.page.get_attribute("body", "data-analysis")
    draw = page.page.locator("#draw").bounding_box()
    page.page.mouse.move(draw["x"] + 60, draw["y"] + 40)
    page.page.mouse.down()
    for x, y in ((140, 40), (90, 170), (80, 180)):
        page.page.mouse.move(draw["x"] + x, draw["y"] + y, steps=5)
    page.page.mouse.up()
    page.page.click("#draw-run")
    page.page.wait_for_function("a => document.body.dataset.analysis !== a", arg=analysis, timeout=30_000)
    page.rendered("vision", 3)
    page.check_clean(server)


def test_speech_cross_attention_over_the_spectrogram(server, page, tmp_path):
    clip = tmp_path / "chirp.wav"
    clip.write_bytes(tone_wav())
    page.open(f"{server}/speech/")
    page.page.set_input_files("#file", str(clip))
    page.wait("body[data-analysis]")
    page.tab("cross")
    page.rendered("cross")
    assert page.page.get_attribute("#cross-canvas", "data-cols") == "75"  # 1.5 s: 75 positions of 20 ms
    page.check_clean(server)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_one_visible_line_and_the_page_keeps_working(server, browser, tmp_path):
    page = Page(browser)
    page.open(f"{server}/lm/")
    page.rendered("head")
    message = page.page.locator("#message")
    for text, want in (
        ("", "enter some text first"),
        ("a" * 70, "the text is 70 tokens; the explorer takes at most 64"),
        ("Capital", "characters not in the vocabulary"),
    ):
        page.page.fill("#text", text)
        page.page.click("#run")
        page.page.wait_for_selector("#message:not([hidden])")
        assert want in message.inner_text() and "\n" not in message.inner_text()
        assert message.bounding_box()["height"] < 40  # one line
    page.shot("bad-input")
    page.run_text(LM_TEXT)  # the page still works, and the message goes away
    assert message.is_hidden()
    page.check_clean(server, allow_bad_requests=True)

    for family, name, data, want in (
        ("vision", "notes.png", b"not an image at all", "the file is not an image"),
        ("speech", "notes.wav", b"RIFF junk", "the file is not PCM WAV audio"),
    ):
        page = Page(browser)
        page.open(f"{server}/{family}/")
        bad = tmp_path / name
        bad.write_bytes(data)
        page.page.set_input_files("#file", str(bad))
        page.page.wait_for_selector("#message:not([hidden])")
        assert want in page.page.inner_text("#message")
        good = tmp_path / ("ok.png" if family == "vision" else "ok.wav")
        good.write_bytes(digit_png() if family == "vision" else tone_wav())
        page.page.set_input_files("#file", str(good))
        page.wait("body[data-analysis]")
        page.check_clean(server, allow_bad_requests=True)


# ----------------------------------------------------------------------------- static export


def test_static_export_renders_offline(browser, lm, translation, tmp_path):
    from attentive.explore import export_html

    for subject, text, views in (
        (lm, LM_TEXT, ("model", "lens", "ideas")),
        (translation, SOURCE_TEXT, ("cross", "beams")),
    ):
        path = export_html(subject, text, tmp_path / f"{subject.family}.html")
        html = path.read_text(encoding="utf-8")
        assert "http://" not in html and "https://" not in html and 'src="static/' not in html
        page = Page(browser, offline=True)
        page.context.route(
            "**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort()
        )
        page.open(path.as_uri())
        page.rendered("head")
        canvas = page.page.locator("#head-canvas")
        assert canvas.get_attribute("data-tokens") == str(len(text))
        for view in views:
            page.tab(view)
            page.rendered(view if view != "ideas" else "idea-masks")
        if subject.family == "lm":
            page.shot("export-lm-ideas")
        page.check_clean(None)


def test_a_link_opens_one_idea_panel(server, browser, lm, tmp_path):
    """``#idea=NAME`` opens the Ideas view with that panel alone (the documentation embeds an
    exported page once per concept this way), a new hash switches panel or view, and "Show every
    idea" brings the others back; on an exported page and on the served one."""
    from attentive.explore import export_html

    path = export_html(lm, LM_TEXT, tmp_path / "lm.html")
    page = Page(browser, offline=True)
    page.context.route(
        "**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort()
    )
    page.open(path.as_uri() + "#idea=positions")
    page.rendered("idea-positions")
    assert page.page.is_visible("#view-ideas") and not page.page.is_visible("#view-head")
    visible = page.page.locator("#ideas .idea:visible")
    assert visible.count() == 1 and visible.get_attribute("id") == "idea-positions"
    page.page.evaluate("location.hash = 'idea=attention-steps'")  # dashes or underscores
    page.rendered("idea-attention_steps")
    assert visible.count() == 1 and visible.get_attribute("id") == "idea-attention_steps"
    page.page.click("#ideas-all")
    page.rendered("idea-masks")
    assert visible.count() == len(IDEAS) and page.page.is_hidden("#ideas-all")
    page.page.evaluate("location.hash = 'view=model'")
    page.rendered("model")
    assert page.page.is_visible("#view-model") and not page.page.is_visible("#view-ideas")
    page.check_clean(None)

    live = Page(browser)
    live.open(f"{server}/lm/#idea=masks")  # the example text runs on load, into the masks panel
    live.rendered("idea-masks")
    assert live.page.locator("#ideas .idea:visible").count() == 1
    live.check_clean(server)
