"""The ledger export for the ward's books: the ledger rows of a filter, streamed from the database, as CSV
in UTF-8 with a BOM (for Excel), CSV in CP932 (for older accounting systems), or XLSX.

The filter (every condition is on the ledger row itself, and they are combined with AND):
- `first`..`last`: the row's business_date, the 日計表 day it is counted on, both days included. These
  are Tokyo calendar dates, worked out when the row was written (services/ledger.py), so a movement
  recorded at 2027-04-01 00:00 JST (2027-03-31 15:00 UTC) is on 2027-04-01, and one at 23:59:59 JST
  the day before is on 2027-03-31. A late row (its own day was closed) is on the day it is counted on,
  not its 納付日; the 納付日 is a column. At most MAX_DAYS days: a fiscal year with its closing period.
- `fiscal_year`: the row's fiscal_year: a capture's is that of its 納付日; a refund's (現年度戻出) that
  of the fee it gives back, a 過年度支出's and a fee's that of the day it is paid. So FY2026 and
  1 April – 31 May 2027 is the old year's 出納整理期間.
- `building_id`: the building the booking was in when the money moved (the row's building_id).
- `method`: card (online), cash or terminal (a card on the counter's terminal).
- `account`: the row's account_code (歳入科目, or the expense account of a fee or a 過年度支出).

A capture row of a booking with an exemption (減免) in force also carries the booking's full fee (使用料),
the exemption's code and the reduction (減免額), beside the amount it received (full fee − reduction); other
rows (refunds, fees) leave them empty, so a column's sum over a period is the reductions granted in it.

The query is one statement, read `BATCH` rows at a time (a server-side cursor on PostgreSQL), so memory
stays the same whatever the number of rows. XLSX is written by XlsxWriter in its constant-memory mode;
XlsxWriter needs a file, so the workbook goes to a temporary file first, which is then sent in chunks.

CP932 cannot hold every character (JIS X 0213 names such as 𠮷, emoji). Each one becomes
CP932_SUBSTITUTIONS[c] when configured, or the same character in CP932's form, or CP932_SUBSTITUTE
(〓); never dropped. Every replacement is listed, with its row, column and code points (Cp932).

Every export is in the audit trail ("finance_export", "exported"): who, the filter, the format and the
number of rows, written in a transaction of its own once the last row has been read and before the
last bytes are sent, so a file that arrives whole was recorded; a download cut short is recorded with
what was read and complete=false. Formula-like text is guarded as in the staff export (safe_cell).
"""
import csv
import getpass
import io
import os
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import and_, func, select

from ...extensions import db
from ...i18n import gettext as _
from ...i18n import lazy_gettext as _l
from ...models import Building, Exemption, ExemptionState, LedgerEntry, LedgerSettlement, Receipt, Room, record
from ...timeutil import local, now_utc
from ..exports import BOM, EARLIEST, LATEST, ExportError, safe_cell
from .labels import KIND_LABELS, METHOD_LABELS, REFUND_KIND_LABELS

FORMATS = ("csv", "cp932", "xlsx")
# A fiscal year with its closing period (1 April to 31 May of the next year) is 426 days, 427 with a 29 February.
MAX_DAYS = 427
BATCH = 1000  # rows fetched at a time
CHUNK = 64 * 1024  # bytes sent at a time
XLSX_SHEET_ROWS = 1_048_576  # Excel's limit, the heading included: more rows go on to another sheet
PREVIEW_LIMIT = 200  # replacements listed on the page (the file lists them all)

COLUMNS = [
    ("id", _l("Ledger row")),
    ("business_date", _l("Day counted (daily report)")),
    ("paid_on", _l("Payment date")),
    ("late", _l("Late")),
    ("recorded_at", _l("Recorded at (Tokyo)")),
    ("fiscal_year", _l("Fiscal year")),
    ("kind", _l("Kind")),
    ("refund_kind", _l("Refund class")),
    ("number", _l("Receipt or refund number")),
    ("booking_id", _l("Booking number")),
    ("payer", _l("Payer name")),
    ("building", _l("Building")),
    ("room", _l("Room")),
    ("account_code", _l("Account code")),
    ("account_name", _l("Account")),
    ("method", _l("Payment method")),
    # On a capture of an exempted booking (減免): the fee before the exemption, its code, and what it took off.
    ("full_fee", _l("Full fee (yen)")),
    ("exemption_code", _l("Exemption code")),
    ("reduction", _l("Reduction (yen)")),
    ("amount", _l("Amount (yen)")),
    ("intent_id", _l("Payment intent ID")),
    ("charge_id", _l("Charge ID")),
    ("refund_id", _l("Refund ID")),
    ("balance_transaction_id", _l("Balance transaction ID")),
    ("payout_id", _l("Payout ID")),
    ("arrival_date", _l("Remittance date")),
]
KEYS = [key for key, _label in COLUMNS]
INT_KEYS = frozenset({"id", "fiscal_year", "booking_id", "full_fee", "reduction", "amount"})
AMOUNT = KEYS.index("amount")
REDUCTION = KEYS.index("reduction")
YEN_COLUMNS = frozenset(KEYS.index(key) for key in ("full_fee", "reduction", "amount"))
MIMETYPES = {"csv": "text/csv; charset=utf-8", "cp932": "application/zip",
             "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
REPORT_COLUMNS = [_l("Ledger row"), _l("Column"), _l("Character"), _l("Code points"), _l("Replaced by"), _l("Rule")]
RULES = {
    "table": _l("Substitution table"),
    "same": _l("The same character in CP932's form"),
    "composed": _l("Composed form"),
    "selector": _l("Variation selector dropped"),
    "substitute": _l("Substitute mark"),
}
# Characters Python's cp932 codec refuses whose CP932 form is the same character (Windows' own mapping).
CP932_FORMS = {"\u2014": "\u2015", "\u00a6": "\uffe4", "\u00a5": "\uffe5", "\u203e": "\uffe3"}


class FilterError(ExportError):
    """What is wrong with the filter, by field (from, to, fiscal_year, building, method, account, format)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = errors


@dataclass(frozen=True)
class LedgerFilter:
    first: date
    last: date  # inclusive
    fiscal_year: int | None = None
    building_id: int | None = None
    method: str | None = None
    account: str | None = None

    def conditions(self) -> list:
        conditions = [LedgerEntry.business_date >= self.first, LedgerEntry.business_date <= self.last]
        if self.fiscal_year is not None:
            conditions.append(LedgerEntry.fiscal_year == self.fiscal_year)
        if self.building_id is not None:
            conditions.append(LedgerEntry.building_id == self.building_id)
        if self.method is not None:
            conditions.append(LedgerEntry.method == self.method)
        if self.account is not None:
            conditions.append(LedgerEntry.account_code == self.account)
        return conditions

    def args(self) -> dict:
        """The filter as the page's query arguments (and the audit entry's `filter`): only what was given."""
        given = {"from": self.first.isoformat(), "to": self.last.isoformat(), "fiscal_year": self.fiscal_year,
                 "building": self.building_id, "method": self.method, "account": self.account}
        return {key: value for key, value in given.items() if value is not None}

    def filename(self, ending: str) -> str:
        return f"ledger-{self.first.isoformat()}-{self.last.isoformat()}{ending}"


# -- the filter, from what a person typed --------------------------------------------------------------

def account_choices() -> list[tuple[str, str]]:
    """Every account a ledger row can be booked under, (code, name), by code: the configured revenue, fee and
    過年度支出 accounts, and each building's own revenue account."""
    config = current_app.config
    codes = set(config["REVENUE_ACCOUNTS"].values()) | set(config["ACCOUNT_NAMES"])
    codes |= {config["FEE_EXPENSE_ACCOUNT"], config["PRIOR_YEAR_REFUND_ACCOUNT"]}
    codes |= set(db.session.scalars(select(Building.revenue_account).where(Building.revenue_account.is_not(None))))
    return [(code, config["ACCOUNT_NAMES"].get(code, "")) for code in sorted(c for c in codes if c)]


def _day(text: str | None, errors: dict, key: str) -> date | None:
    if not text:
        errors[key] = _("Choose the first and the last day to export.")
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        day = None
    if day is None or not EARLIEST <= day <= LATEST:
        errors[key] = _("Enter the days as YYYY-MM-DD, for example 2027-04-01.")
        return None
    return day


def _fiscal_year(text: str | None, errors: dict) -> int | None:
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if text.isascii() and text.isdigit() and EARLIEST.year <= int(text) <= LATEST.year:
        return int(text)
    errors["fiscal_year"] = _("Enter a fiscal year as four digits, for example 2026 (April 2026 to March 2027).")
    return None


def _building(text: str | None, errors: dict) -> int | None:
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if text.isascii() and text.isdigit() and len(text) < 10 and db.session.get(Building, int(text)) is not None:
        return int(text)
    errors["building"] = _("Choose a building from the list.")
    return None


def parse_filter(first: str | None, last: str | None, *, fiscal_year: str | None = None,
                 building: str | None = None, method: str | None = None,
                 account: str | None = None) -> LedgerFilter:
    """The filter from text as typed on the page or the command line (an empty value: any), or FilterError
    saying, for each field, what is wrong. The page and the CLI both come here: one set of rules."""
    errors: dict[str, str] = {}
    first_day, last_day = _day(first, errors, "from"), _day(last, errors, "to")
    if first_day and last_day:
        if last_day < first_day:
            errors["to"] = _("The last day must not be before the first day.")
        elif (last_day - first_day).days + 1 > MAX_DAYS:
            errors["to"] = _("Export at most %(days)d days at a time: a fiscal year with its closing period "
                             "(1 April to 31 May of the next year) fits.", days=MAX_DAYS)
    year = _fiscal_year(fiscal_year, errors)
    building_id = _building(building, errors)
    method = (method or "").strip() or None
    if method is not None and method not in METHOD_LABELS:
        errors["method"] = _("Choose a payment method from the list.")
    account = (account or "").strip() or None
    if account is not None and account not in {code for code, _name in account_choices()}:
        errors["account"] = _("Choose an account from the list.")
    if errors:
        raise FilterError(errors)
    return LedgerFilter(first_day, last_day, year, building_id, method, account)


def parse_format(text: str | None) -> str:
    if text not in FORMATS:
        raise FilterError({"format": _("Choose CSV (UTF-8), CSV (CP932) or Excel (XLSX).")})
    return text


# -- the rows --------------------------------------------------------------------------------------------

def statement(f: LedgerFilter):
    """One query for every column: the ledger row, its building and room, the booking's receipt and the
    exemption in force (for a capture) and its settlement (入金日), in the order of the 日計表: day, then row."""
    return (
        select(LedgerEntry.id, LedgerEntry.business_date, LedgerEntry.paid_on, LedgerEntry.at,
               LedgerEntry.fiscal_year, LedgerEntry.kind, LedgerEntry.refund_kind, LedgerEntry.refund_serial,
               Receipt.fiscal_year.label("receipt_year"), Receipt.serial.label("receipt_serial"),
               LedgerEntry.booking_id, LedgerEntry.payer_name, Building.name.label("building"),
               Room.name.label("room"), LedgerEntry.account_code, LedgerEntry.method,
               Exemption.full_fee, Exemption.code.label("exemption_code"), Exemption.reduction, LedgerEntry.amount,
               LedgerEntry.intent_id, LedgerEntry.charge_id, LedgerEntry.provider_refund_id,
               func.coalesce(LedgerEntry.balance_transaction_id,
                             LedgerSettlement.balance_transaction_id).label("balance_transaction_id"),
               LedgerSettlement.payout_id, LedgerSettlement.arrival_date)
        .join(Building, Building.id == LedgerEntry.building_id)
        .join(Room, Room.id == LedgerEntry.room_id)
        .outerjoin(Receipt, and_(Receipt.booking_id == LedgerEntry.booking_id, LedgerEntry.kind == "capture"))
        .outerjoin(Exemption, and_(Exemption.booking_id == LedgerEntry.booking_id, LedgerEntry.kind == "capture",
                                   Exemption.state == ExemptionState.APPLIED))
        .outerjoin(LedgerSettlement, LedgerSettlement.ledger_entry_id == LedgerEntry.id)
        .where(*f.conditions())
        .order_by(LedgerEntry.business_date, LedgerEntry.id)
    )


def headings() -> list[str]:
    return [str(label) for _key, label in COLUMNS]


class _Words:
    """The labels of one export in its language, looked up once rather than once a row."""

    def __init__(self):
        self.yes, self.no = _("Yes"), _("No")
        self.kinds = {kind: str(label) for kind, label in KIND_LABELS.items()}
        self.refund_kinds = {kind: str(label) for kind, label in REFUND_KIND_LABELS.items()}
        self.methods = {method: str(label) for method, label in METHOD_LABELS.items()}
        self.accounts = current_app.config["ACCOUNT_NAMES"]


def _number(row) -> str:
    """A refund's number, or the booking's receipt number on a capture (the models' own formats)."""
    if row.refund_serial is not None:
        return LedgerEntry.refund_number.fget(row)
    if row.receipt_serial is not None:
        return Receipt.number.fget(SimpleNamespace(fiscal_year=row.receipt_year, serial=row.receipt_serial))
    return ""


def _cells(row, words: _Words) -> list:
    """One row's values in COLUMNS order: ints, dates, a Tokyo wall-clock datetime, or text ("" for none)."""
    return [
        row.id, row.business_date, row.paid_on, words.yes if LedgerEntry.late.fget(row) else words.no,
        local(row.at).replace(tzinfo=None), row.fiscal_year, words.kinds.get(row.kind, row.kind),
        words.refund_kinds.get(row.refund_kind, ""), _number(row), row.booking_id, row.payer_name, row.building,
        row.room, row.account_code, words.accounts.get(row.account_code, ""), words.methods.get(row.method, row.method),
        row.full_fee, row.exemption_code or "", row.reduction, row.amount, row.intent_id or "", row.charge_id or "",
        row.provider_refund_id or "", row.balance_transaction_id or "", row.payout_id or "", row.arrival_date,
    ]


def ledger_rows(f: LedgerFilter) -> Iterator[tuple[int, list]]:
    """(ledger row id, cells) for every row of the filter, read BATCH at a time: memory does not grow with rows."""
    words = _Words()
    result = db.session.execute(statement(f).execution_options(yield_per=BATCH))
    try:
        for row in result:
            yield row.id, _cells(row, words)
    finally:
        result.close()


def _day_text(value: date | None) -> str:
    return "" if value is None else value.isoformat()


def _clock_text(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


# How each column becomes CSV text: dates as YYYY-MM-DD (none: empty), the recorded time as YYYY-MM-DD
# HH:MM:SS, numbers as they are (None), text through the formula guard. Looked up per column, not per value.
CSV_TEXT = tuple({"business_date": _day_text, "paid_on": _day_text, "arrival_date": _day_text,
                  "recorded_at": _clock_text}.get(key, None if key in INT_KEYS else safe_cell) for key in KEYS)
TEXT_COLUMNS = tuple(i for i, convert in enumerate(CSV_TEXT) if convert is safe_cell)


def _csv_row(cells: list) -> list:
    return [cell if convert is None else convert(cell) for convert, cell in zip(CSV_TEXT, cells, strict=True)]


# -- CP932 --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Replacement:
    row_id: int | None  # None: a heading
    column: str
    original: str
    replaced_by: str
    rule: str  # a key of RULES

    @property
    def code_points(self) -> str:
        return " ".join(f"U+{ord(c):04X}" for c in self.original)

    def cells(self) -> list:
        return ["" if self.row_id is None else self.row_id, self.column, self.original, self.code_points,
                self.replaced_by, str(RULES[self.rule])]


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _extends(char: str, cluster: str) -> bool:
    """Whether `char` belongs to the cluster before it: a combining mark (゙ U+3099), a variation selector,
    an emoji modifier or tag, a zero-width joiner and what it joins, a flag's second half."""
    code, previous = ord(char), cluster[-1]
    if _regional(char):
        return len(cluster) == 1 and _regional(previous)
    return (unicodedata.category(char) in ("Mn", "Me", "Mc") or 0xFE00 <= code <= 0xFE0F
            or 0xE0100 <= code <= 0xE01EF or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F
            or code == 0x200D or previous == "\u200d")


def clusters(text: str) -> Iterator[str]:
    """The text as the characters a reader sees: a base with whatever extends it (a simple grapheme rule)."""
    current = ""
    for char in text:
        if current and _extends(char, current):
            current += char
        else:
            if current:
                yield current
            current = char
    if current:
        yield current


def _without_selectors(text: str) -> str:
    return "".join(c for c in text if not (0xFE00 <= ord(c) <= 0xFE0F or 0xE0100 <= ord(c) <= 0xE01EF))


def _round_trips(text: str) -> bool:
    """Whether CP932 holds the text and gives it back as itself (Python's codec writes 〜 U+301C as 0x8160,
    which reads back as ～ U+FF5E: the same mark in CP932, but another character)."""
    try:
        return text.encode("cp932").decode("cp932") == text
    except UnicodeEncodeError:
        return False


def _encodes(text: str) -> bool:
    try:
        text.encode("cp932")
    except UnicodeEncodeError:
        return False
    return True


class Cp932:
    """Makes text fit CP932, reporting each character (as a reader sees it) that does not come back as itself.

    In order: the configured table (CP932_SUBSTITUTIONS), the same character in CP932's form (the
    codec's own: 〜 → ～; or Windows' mapping of — ¦ ¥ ‾), the composed form (か + ゙ → が), the
    character without its variation selector (葛 + U+E0100 → 葛), else CP932_SUBSTITUTE (〓)."""

    def __init__(self, on_replace: Callable[[Replacement], None]):
        config = current_app.config
        substitute = config["CP932_SUBSTITUTE"]
        self.substitute = substitute if _encodes(substitute) else "〓"
        # A configured value CP932 cannot hold either would only be replaced again: the mark it is.
        self.table = {key: value.encode("cp932").decode("cp932") if _encodes(value) else self.substitute
                      for key, value in config["CP932_SUBSTITUTIONS"].items()}
        self.on_replace = on_replace

    def text(self, text: str, row_id: int | None, column: str) -> str:
        if _round_trips(text):
            return text
        out = []
        for cluster in clusters(text):
            if _round_trips(cluster):
                out.append(cluster)
                continue
            new, rule = self._replace(cluster)
            self.on_replace(Replacement(row_id, column, cluster, new, rule))
            out.append(new)
        return "".join(out)

    def _replace(self, cluster: str) -> tuple[str, str]:
        composed = unicodedata.normalize("NFC", cluster)
        bare = _without_selectors(composed)
        for candidate in (cluster, composed, bare):
            if candidate in self.table:
                return self.table[candidate], "table"
        if _encodes(cluster):
            return cluster.encode("cp932").decode("cp932"), "same"
        if cluster in CP932_FORMS:
            return CP932_FORMS[cluster], "same"
        if composed != cluster and _round_trips(composed):
            return composed, "composed"
        if bare != composed and bare and _round_trips(bare):
            return bare, "selector"
        return self.substitute, "substitute"


    def cells(self, names: list[str], row_id: int | None, cells: list) -> list:
        """A row's cells (in place) with every text made to fit (`names`: the column headings, for the report)."""
        for i in TEXT_COLUMNS:
            cells[i] = self.text(cells[i], row_id, names[i])
        return cells


class ReplacementList:
    """Every replacement of one export: counted, the first `keep` kept to show on the page and, when
    `spool`, all written as CSV to a temporary file (in memory while small) for the report file."""

    def __init__(self, keep: int = 0, *, spool: bool = True):
        self.count, self.keep, self.first = 0, keep, []
        self._file = tempfile.SpooledTemporaryFile(max_size=1 << 20) if spool else None
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def add(self, replacement: Replacement) -> None:
        self.count += 1
        if len(self.first) < self.keep:
            self.first.append(replacement)
        if self._file is not None:
            self._writer.writerow([safe_cell(cell) for cell in replacement.cells()])
            if self._buffer.tell() >= CHUNK:
                self._spill()

    def _spill(self) -> None:
        self._file.write(self._buffer.getvalue().encode("utf-8"))
        self._buffer.seek(0)
        self._buffer.truncate()

    def report_chunks(self) -> Iterator[bytes]:
        """The report file: CSV, UTF-8 with a BOM, one line per replacement, in the order of the export."""
        self._spill()
        heading = io.StringIO()
        csv.writer(heading, lineterminator="\r\n").writerow([safe_cell(str(h)) for h in REPORT_COLUMNS])
        yield (BOM + heading.getvalue()).encode("utf-8")
        self._file.seek(0)
        while chunk := self._file.read(CHUNK):
            yield chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


# -- one export ------------------------------------------------------------------------------------------

class _Sink:
    """Where the ZIP is written as it grows: a write-only stream (zipfile then writes no sizes back)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return data


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=local(now_utc()).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


class LedgerExport:
    """One export of `f` in `fmt` ("csv", "cp932" or "xlsx"), by `actor_id` (None from the CLI), `via` web or cli.

    chunks(): the file's bytes as the page sends it (CP932: a ZIP of ledger.csv and replacements.csv);
    write(): the same for the CLI (CP932: the CSV alone, and the report to a file of its own).
    Both write the audit entry (see the module's docstring). `rows` counts the rows read so far."""

    def __init__(self, f: LedgerFilter, fmt: str, *, actor_id: int | None = None, via: str = "web"):
        self.filter, self.format, self.actor_id, self.via = f, fmt, actor_id, via
        self.rows = 0
        self.replacements = ReplacementList() if fmt == "cp932" else None

    def _rows(self) -> Iterator[tuple[int, list]]:
        for row_id, cells in ledger_rows(self.filter):
            self.rows += 1
            yield row_id, cells

    def csv_chunks(self) -> Iterator[bytes]:
        """The CSV: UTF-8 with a BOM, or CP932 with every character it cannot hold replaced; CRLF lines."""
        cp932 = Cp932(self.replacements.add) if self.format == "cp932" else None
        encoding = "cp932" if cp932 else "utf-8"
        names = headings()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        if cp932 is None:
            buffer.write(BOM)
        writer.writerow([safe_cell(cp932.text(h, None, h) if cp932 else h) for h in names])
        for row_id, cells in self._rows():
            if cp932 is not None:
                cp932.cells(names, row_id, cells)
            writer.writerow(_csv_row(cells))
            if buffer.tell() >= CHUNK:
                yield buffer.getvalue().encode(encoding)
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode(encoding)

    def _zip_chunks(self) -> Iterator[bytes]:
        """ledger.csv (CP932) and replacements.csv (UTF-8), zipped as they are made."""
        sink = _Sink()
        with zipfile.ZipFile(sink, "w") as archive:
            with archive.open(_member("ledger.csv"), "w", force_zip64=True) as member:
                for chunk in self.csv_chunks():
                    member.write(chunk)
                    if sink.size >= CHUNK:
                        yield sink.take()
            with archive.open(_member("replacements.csv"), "w", force_zip64=True) as member:
                for chunk in self.replacements.report_chunks():
                    member.write(chunk)
        yield sink.take()

    def xlsx_chunks(self) -> Iterator[bytes]:
        """The workbook, written with XlsxWriter (constant memory) to a temporary file, then sent in chunks."""
        import xlsxwriter

        handle, path = tempfile.mkstemp(suffix=".xlsx")
        os.close(handle)
        try:
            self._write_xlsx(path, xlsxwriter)
            with open(path, "rb") as workbook:
                while chunk := workbook.read(CHUNK):
                    yield chunk
        finally:
            os.unlink(path)

    def _write_xlsx(self, path: str, xlsxwriter) -> None:
        book = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_formulas": False,
                                          "strings_to_urls": False, "strings_to_numbers": False})
        formats = {date: book.add_format({"num_format": "yyyy-mm-dd"}),
                   datetime: book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
                   "yen": book.add_format({"num_format": "#,##0"}), "head": book.add_format({"bold": True})}
        sheet, line, sheets = None, XLSX_SHEET_ROWS, 0
        for _row_id, cells in self._rows():
            if line == XLSX_SHEET_ROWS:
                sheets += 1
                sheet, line = self._xlsx_sheet(book, sheets, formats["head"]), 1
            for col, value in enumerate(cells):
                if isinstance(value, datetime | date):
                    sheet.write_datetime(line, col, value, formats[type(value)])
                elif isinstance(value, int):
                    sheet.write_number(line, col, value, formats["yen"] if col in YEN_COLUMNS else None)
                elif value:
                    sheet.write_string(line, col, safe_cell(value))
            line += 1
        if sheet is None:
            self._xlsx_sheet(book, 1, formats["head"])
        book.close()

    @staticmethod
    def _xlsx_sheet(book, number: int, bold):
        title = _("Ledger") if number == 1 else f"{_('Ledger')} ({number})"
        sheet = book.add_worksheet(title[:31])
        sheet.freeze_panes(1, 0)
        for col, heading in enumerate(headings()):
            sheet.write_string(0, col, safe_cell(heading), bold)
        return sheet

    def chunks(self) -> Iterator[bytes]:
        """The file the page sends, audited."""
        body = {"csv": self.csv_chunks, "cp932": self._zip_chunks, "xlsx": self.xlsx_chunks}[self.format]
        return self._audited(body())

    def write(self, out, report=None) -> None:
        """The CLI's file to `out` (binary), and for CP932 the report to `report` (binary), audited."""
        body = self.xlsx_chunks if self.format == "xlsx" else self.csv_chunks
        for chunk in self._audited(body()):
            out.write(chunk)
        if self.replacements is not None and report is not None:
            for chunk in self.replacements.report_chunks():
                report.write(chunk)

    def _audited(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """`chunks`, holding the last one back until the audit entry is committed."""
        recorded = False
        try:
            pending = None
            for chunk in chunks:
                if pending is not None:
                    yield pending
                pending = chunk
            self._record(complete=True)
            recorded = True
            if pending:
                yield pending
        finally:
            chunks.close()
            if not recorded:
                self._record_cut_short()

    def _record(self, *, complete: bool) -> None:
        """The audit entry, in a transaction of its own: the export's reads end first."""
        db.session.rollback()
        data = {"filter": self.filter.args(), "format": self.format, "rows": self.rows, "complete": complete,
                "via": self.via}
        if self.replacements is not None:
            data["replacements"] = self.replacements.count
        if self.via == "cli":
            data["os_user"] = _os_user()
        record("finance_export", self.actor_id or 0, "exported", actor_id=self.actor_id, **data)
        db.session.commit()

    def _record_cut_short(self) -> None:
        """A download that stopped (the client left, the database failed) is recorded with what was read;
        a failure to record it is logged, never raised over the error that stopped the export."""
        try:
            self._record(complete=False)
        except Exception:
            db.session.rollback()
            current_app.logger.exception("finance export: could not record an export cut short")

    def close(self) -> None:
        if self.replacements is not None:
            self.replacements.close()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no name for the uid (a container): the audit entry still says via cli
        return ""


# -- the page's check before a CP932 download ----------------------------------------------------------

@dataclass
class Preview:
    rows: int
    net: int
    replacements: ReplacementList
    exempted: int = 0  # capture rows of bookings with an exemption (減免) in force
    reductions: int = 0  # the yen those exemptions took off (not money: the rows' amounts are what was paid)


def preview(f: LedgerFilter, keep: int = PREVIEW_LIMIT) -> Preview:
    """What the filter exports: its rows, their sum, the exempted captures and their reductions (減免, apart
    from the sum), and every CP932 replacement the CP932 file would make
    (the first `keep` kept to list), by the same code as the export. Reads only."""
    replacements = ReplacementList(keep, spool=False)
    cp932 = Cp932(replacements.add)
    names = headings()
    rows = net = exempted = reductions = 0
    for name in names:
        cp932.text(name, None, name)
    for row_id, cells in ledger_rows(f):
        rows += 1
        net += cells[AMOUNT]
        if cells[REDUCTION] is not None:
            exempted += 1
            reductions += cells[REDUCTION]
        cp932.cells(names, row_id, cells)
    return Preview(rows, net, replacements, exempted, reductions)
