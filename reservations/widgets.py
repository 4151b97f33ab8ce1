"""WTForms' html_params, the same markup for a fraction of the cost.

Every field a page renders, and every option of a select or checkbox list, goes through
wtforms.widgets.core.html_params. It builds each attribute with Markup.format, that is through
string.Formatter in pure Python, and then escapes what it has just built a second time in Markup.join. A
search page with its kind and building selects and its equipment checkboxes called it 70 times, and it cost
a third of the page's own time (bench/calendar_pages.py).

html_params below gives the same string, byte for byte (tests/test_widgets.py checks it against WTForms'
own function over generated attributes): names sorted, cleaned as WTForms cleans them (clean_key: `class_`
is `class`, `data_x_y` is `data-x-y`), True alone, False left out, every other value escaped, with `"`
written `&quot;` even inside a value that is already Markup. install() puts it where WTForms' widgets look
it up, once per process.
"""
from functools import lru_cache

import wtforms.widgets
from markupsafe import Markup, escape
from wtforms.widgets import core

_original = core.html_params


@lru_cache(maxsize=512)
def _name(key: str) -> str:
    """An attribute's name as written: WTForms' clean_key, escaped. Names come from code, not from visitors."""
    return str(escape(core.clean_key(key)))


def html_params(**kwargs) -> Markup:
    params = []
    for key, value in sorted(kwargs.items()):
        if value is True:
            params.append(_name(key))
        elif value is not False:
            params.append(f'{_name(key)}="{str(escape(value)).replace(chr(34), "&quot;")}"')
    return Markup(" ".join(params))


def install() -> None:
    """Where WTForms looks html_params up: its widgets module, the widgets package that re-exports it (a
    field's Label calls `widgets.html_params`), and the staticmethod that Input and Button (and with them
    every input widget) took from it when they were defined."""
    core.html_params = html_params
    wtforms.widgets.html_params = html_params
    for widget in (core.Input, core.Button):
        widget.html_params = staticmethod(html_params)
