"""A detect-secrets plugin for latchkey app passwords (version 2).

Use it with Yelp's detect-secrets (PyPI ``detect-secrets``, 1.x):

    detect-secrets scan --all-files \
        --plugin contrib/secret-scanning/latchkey_detect_secrets.py

A candidate is ``lk`` at a word's start, then 34 more letters, together or in
groups of four separated by single spaces or single dashes (the same one
throughout), any case, then a word's end. It is reported only if its last
four letters are the check of the first 32: the first eight bytes of
SHA-256 over ``latchkey app password v2\\0`` and the 32 lowercase letters, as
a big-endian integer, modulo 26**4, written as four base-26 letters (a = 0).
One random candidate in 456,976 passes, so what passes is a latchkey app
password (or one letter away from being one).

docs/secret-format-v2.md has the format and its reasons; vectors.txt beside
this file is what latchkey's tests check this plugin against.
"""
import hashlib
import re

from detect_secrets.plugins.base import RegexBasedDetector

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_CHECK_DOMAIN = b"latchkey app password v2\0"

# ASCII \b: a word is letters, digits and "_", as RE2 (gitleaks) and
# latchkey scan see it.
PATTERN = re.compile(
    r"\b(lk[a-z]{34}|lk[a-z]{2}(?: [a-z]{4}){8}|lk[a-z]{2}(?:-[a-z]{4}){8})\b",
    re.IGNORECASE | re.ASCII,
)


def check_of(body):
    """The four check letters of a version 2 secret's first 32 letters."""
    digest = hashlib.sha256(_CHECK_DOMAIN + body.encode("ascii")).digest()
    value = int.from_bytes(digest[:8], "big") % 26**4
    letters = ""
    for _ in range(4):
        letters = _LETTERS[value % 26] + letters
        value //= 26
    return letters


def checks(candidate):
    """Whether a candidate the pattern matched has a holding check."""
    letters = re.sub(r"[ -]", "", candidate).lower()
    return len(letters) == 36 and check_of(letters[:32]) == letters[32:]


class LatchkeyAppPasswordDetector(RegexBasedDetector):
    """Scans for latchkey app passwords (version 2, check verified)."""

    secret_type = "latchkey app password"
    denylist = (PATTERN,)

    def analyze_string(self, string):
        for match in PATTERN.findall(string):
            if checks(match):
                yield match
