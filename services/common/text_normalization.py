"""Normalization of Persian, Arabic and Latin text for matching and search.

The original text is always kept as entered; these keys only decide what matches what:
Arabic and Persian forms of one letter (ي/ی, ك/ک, ...), diacritics and tatweel, zero-width
joiners and other invisible format characters, Persian and Arabic-Indic digits, case.
"""
from __future__ import annotations

import functools
import re
import unicodedata

_LETTER_FORMS = {
    "ي": "ی", "ى": "ی", "ئ": "ی",  # Arabic yeh, alef maksura, yeh with hamza -> Persian yeh
    "ك": "ک",  # Arabic kaf -> Persian keheh
    "ة": "ه", "ۀ": "ه", "ہ": "ه", "ھ": "ه",  # teh marbuta, heh forms
    "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا",  # alef forms
    "ؤ": "و",
}
_DIGITS = {ord(c): str(i) for i, c in enumerate("۰۱۲۳۴۵۶۷۸۹")}
_DIGITS.update({ord(c): str(i) for i, c in enumerate("٠١٢٣٤٥٦٧٨٩")})
_TRANSLATE = {ord(k): v for k, v in _LETTER_FORMS.items()} | _DIGITS
_WHITESPACE = re.compile(r"\s+")


def normalize_digits(text: str) -> str:
    """Persian and Arabic-Indic digits to ASCII, nothing else changed."""
    return text.translate(_DIGITS)


@functools.lru_cache(maxsize=4096)  # names, tags and cities repeat: a hit costs a tenth of the work
def search_key(text: str | None) -> str:
    """The form two strings share when a person would call them the same."""
    if not text:
        return ""
    if text.isascii():  # no letter forms, marks or format characters: case and spaces only
        return _WHITESPACE.sub(" ", text.casefold()).strip()
    # NFKC folds Arabic presentation forms; NFD then separates diacritics (harakat, hamza above).
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_TRANSLATE)
    decomposed = unicodedata.normalize("NFD", text)
    kept = []
    for char in decomposed:
        category = unicodedata.category(char)
        if category == "Mn" or category == "Cf" or char == "\u0640":  # marks, ZWNJ/ZWJ/RLM..., tatweel
            continue
        kept.append(char)
    text = unicodedata.normalize("NFC", "".join(kept)).translate(_TRANSLATE)
    return _WHITESPACE.sub(" ", text.casefold()).strip()
