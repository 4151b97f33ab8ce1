"""reservations/widgets.py: its html_params writes what WTForms' own writes, for any attributes."""
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup
from wtforms import Form, SelectField, SelectMultipleField, StringField
from wtforms import widgets as wtforms_widgets
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import core

from reservations import widgets

NAMES = st.sampled_from(["id", "name", "value", "class_", "for_", "type", "data_room_id", "aria_describedby",
                         "aria_invalid", "autocomplete", "lang", "min", "selected", "checked", "required_"])
TEXT = st.text(alphabet=st.sampled_from(list("aé中 \"'<>&=;_-x1")), max_size=12)
VALUES = st.one_of(TEXT, TEXT.map(Markup), st.booleans(), st.integers(-5, 10**6), st.none())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(NAMES, VALUES, max_size=6))
def test_the_same_markup_as_wtforms_for_any_attributes(attributes):
    ours, theirs = widgets.html_params(**attributes), widgets._original(**attributes)
    assert ours == theirs
    assert isinstance(ours, Markup)


def test_a_value_already_markup_keeps_its_markup_but_not_a_bare_quote():
    given_value = Markup('say "hi" &amp; <b>')
    assert widgets.html_params(title=given_value) == 'title="say &quot;hi&quot; &amp; <b>"'
    assert widgets.html_params(title='say "hi" & <b>') == 'title="say &#34;hi&#34; &amp; &lt;b&gt;"'


class _Form(Form):
    name = StringField("Name", render_kw={"data_x_y": '"q"'})
    kind = SelectField("Kind", choices=[SelectChoice("a", "A & B"), SelectChoice("b", '"Bee"')], default="b")
    equipment = SelectMultipleField("Equipment", choices=[SelectChoice("p", "Piano")],
                                    widget=wtforms_widgets.ListWidget(), option_widget=wtforms_widgets.CheckboxInput())


def test_installed_where_every_widget_looks_it_up(app):
    """create_app installs it (the app fixture made one): the module global that Select, TextArea and
    ListWidget call, the package's name for it that Label calls, and the staticmethod Input and Button took
    when WTForms defined them."""
    assert core.html_params is widgets.html_params
    assert wtforms_widgets.html_params is widgets.html_params
    assert core.Input.html_params is widgets.html_params
    assert core.Button.html_params is widgets.html_params
    form = _Form()
    assert str(form.name(class_="wide")) == '<input class="wide" data-x-y="&#34;q&#34;" id="name" name="name" ' \
                                            'type="text" value="">'
    assert str(form.kind()) == ('<select id="kind" name="kind"><option value="a">A &amp; B</option>'
                                '<option selected value="b">&#34;Bee&#34;</option></select>')
    assert 'type="checkbox" value="p"' in str(form.equipment())
    assert str(form.name.label(class_="big")) == '<label class="big" for="name">Name</label>'

