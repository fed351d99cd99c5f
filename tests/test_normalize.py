"""Text normalisation, URL/mention handling and PII scrubbing, both directions (found and not found)."""

import pytest

from murmur.data.normalize import (
    PII_CARD,
    PII_EMAIL,
    PII_PHONE,
    clean_text,
    dedup_key,
    is_card_number,
    is_retweet,
    luhn_ok,
    normalize_text,
    scrub_cards,
    scrub_emails,
    scrub_phones,
    scrub_pii,
)

# ---------------------------------------------------------------- normalisation

def test_nfc_controls_and_invisible_characters():
    assert normalize_text("cafe\u0301") == "caf\u00e9"  # combining accent composed
    assert normalize_text("a\u200bb\ufeffc\x00d\u202ee") == "abcde"
    family = "👨\u200d👩\u200d👧"  # the zero-width joiner of emoji sequences stays
    assert normalize_text(f"hi {family}") == f"hi {family}"
    assert normalize_text("lone \ud83d surrogate") == "lone surrogate"


def test_whitespace_folded_and_line_breaks_kept():
    assert normalize_text("  a \t b\u00a0\u2003c  ") == "a b c"
    assert normalize_text("line one  \r\nline two") == "line one\nline two"
    assert normalize_text("a\n\n\n\n\nb\u2028c") == "a\n\nb\nc"
    assert normalize_text("a\n\n\nb  c", keep_newlines=False) == "a b c"


def test_html_entities_unescaped():
    assert normalize_text("fish &amp; chips &lt;3 &gt;") == "fish & chips <3 >"
    assert normalize_text("fish &amp; chips", unescape_html=False) == "fish &amp; chips"


def test_retweet():
    assert is_retweet("RT @bob: great thread")
    assert is_retweet("rt @bob great thread")
    assert not is_retweet("RT if you agree")
    assert not is_retweet("great thread RT @bob")


# ---------------------------------------------------------------- URLs and mentions

@pytest.mark.parametrize(("mode", "expected"), [
    ("placeholder", "read this <url>. and <url> (see <url>)"),
    ("remove", "read this . and (see )"),
    ("keep", "read this https://t.co/Ab12. and www.example.com/a?b=1 (see https://en.wikipedia.org/wiki/Foo_(bar))"),
])
def test_url_modes(mode, expected):
    text = "read this https://t.co/Ab12. and www.example.com/a?b=1 (see https://en.wikipedia.org/wiki/Foo_(bar))"
    assert clean_text(text, url_mode=mode)[0] == expected


@pytest.mark.parametrize(("mode", "expected"), [
    ("placeholder", "@user thanks, and @user too"),
    ("remove", "thanks, and too"),
    ("keep", "@alice @bob_2 thanks, and @carol too"),
])
def test_mention_modes(mode, expected):
    assert clean_text("@alice @bob_2 thanks, and @carol too", mention_mode=mode)[0] == expected


def test_nothing_inside_a_url_is_touched():
    text = "profile https://medium.com/@writer/post-4155550134 and mail bob@example.com"
    out, found = clean_text(text, url_mode="keep", mention_mode="placeholder")
    assert out == "profile https://medium.com/@writer/post-4155550134 and mail <email>"
    assert found == PII_EMAIL


def test_dot_mention():
    assert clean_text(".@jack fair point")[0] == ".@user fair point"


def test_an_email_is_not_a_mention():
    assert clean_text("write to jane.doe+x@mail.example.org now")[0] == "write to <email> now"
    assert clean_text("me@home is @ 5 pm")[0] == "me@home is @ 5 pm"
    assert clean_text("first.last@gmail.com", scrub=False)[0] == "first.last@gmail.com"


# ---------------------------------------------------------------- PII

@pytest.mark.parametrize("text", [
    "bob@example.com", "Jane.Doe+news@mail.example.co.uk", "x_y-z@sub.domain.org",
])
def test_emails_found(text):
    assert scrub_emails(f"mail {text} today") == ("mail <email> today", 1)


@pytest.mark.parametrize("text", ["@bob", "me@home", "user@localhost", "a @ b.com"])
def test_emails_not_found(text):
    assert scrub_emails(text) == (text, 0)


@pytest.mark.parametrize("number", [
    "+1 415-555-0134", "(415) 555-0134", "415-555-0134", "415.555.0134", "+1 (415) 555-0134",
    "612 345 678", "+34 612 34 56 78", "0034 612 34 56 78", "06 12 34 56 78", "+44 20 7946 0958",
    "020 7946 0958", "+49 30 123456", "612345678", "4155550134",
])
def test_phones_found(number):
    assert scrub_phones(f"call {number} now") == ("call <phone> now", 1)
    assert scrub_phones(f"tel: {number}.") == ("tel: <phone>.", 1)


@pytest.mark.parametrize("text", [
    "back in 2024", "from 1990-2000", "2019 2020 2021", "we won 2-1 today", "scores 3-1 2-0 1-1 4-2",
    "at 10:30 pm", "on 2024-03-15 10:30", "15/03/2024", "15.03.2024", "cost $1,299.99", "only 1.299.000 €",
    "1.234.567.890 people", "100 000 000 views", "#web3 and #2024goals", "1 2 3 4 5 6 7 8 9 10",
    "order 12345678", "v2.0.1", "+5 points", "call 911", "ISBN 978-3-16-148410-0", "up 12.5% to 3,400",
])
def test_phones_not_found(text):
    assert scrub_phones(text) == (text, 0)


@pytest.mark.parametrize("number", [
    "4111 1111 1111 1111", "4111-1111-1111-1111", "5500005555555559", "378282246310005", "6011 0009 9013 9424",
])
def test_cards_found(number):
    assert scrub_cards(f"card {number} exp 12/27") == ("card <card> exp 12/27", 1)
    assert scrub_pii(f"card {number}") == ("card <card>", PII_CARD)


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",  # fails the Luhn check
    "status 1734567890123456789",  # 19 digits, not Luhn valid
    "123456789012",  # too few digits
    "$4111111111111111.50",
])
def test_cards_not_found(text):
    assert scrub_cards(text) == (text, 0)


def test_luhn():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert is_card_number("4111 1111 1111 1111") and not is_card_number("4111 1111 1111")


def test_scrub_pii_reports_what_it_found():
    text, found = scrub_pii("mail a@b.io or +34 612 34 56 78, card 4111 1111 1111 1111")
    assert text == "mail <email> or <phone>, card <card>"
    assert found == PII_EMAIL | PII_PHONE | PII_CARD
    assert clean_text("nothing here", scrub=True) == ("nothing here", 0)
    assert clean_text("call 415-555-0134", scrub=False) == ("call 415-555-0134", 0)


# ---------------------------------------------------------------- dedup key

def test_dedup_key_folds_what_does_not_matter():
    a = dedup_key("Daily reminder #123: DRINK water!! 💧 https://t.co/x @bob")
    b = dedup_key("daily reminder #124 - drink water <url> @user")
    assert a == b == "daily reminder drink water"  # hashtags, links, mentions, emoji, case, punctuation
    assert dedup_key("Day 12 of 100: still going") == dedup_key("day 13 of 100 - still going") == "day 0 of 0 still going"
    assert dedup_key("day 1 of 100", fold_digits=False) == "day 1 of 100"
    assert dedup_key("great game tonight #NBA") == dedup_key("Great game tonight! #Lakers")
    assert dedup_key("great game tonight") != dedup_key("great match tonight")
