"""Currency codes: ISO 4217 validation, and the one-currency rule for budgets.

Money in different currencies is never added or converted. Billing and labor currencies are upper-cased
on ingest and must be ISO 4217 codes; a budget must be in the currency of the forecast it is compared
with (:func:`check_budget_currency`).

    from pipeline.currency import check_budget_currency
    check_budget_currency(budgets, frames.currency, source="budgets.csv")   # raises InputError
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.errors import InputError, Problem

#: Active ISO 4217 alphabetic codes (list one, 2025), plus the fund / precious-metal codes exports can carry.
ISO_4217: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
    BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB
    EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
    MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
    RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
    TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG
    XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL
    """.split()
)


def normalize(code: object) -> str | None:
    """``' usd '`` -> ``'USD'``; ``None`` when ``code`` is not an ISO 4217 code (whatever its case)."""
    if not isinstance(code, str):
        return None
    c = code.strip().upper()
    return c if c in ISO_4217 else None


def sql_codes() -> str:
    """The codes as a SQL list literal body: ``'AED', 'AFN', ...``."""
    return ", ".join(f"'{c}'" for c in sorted(ISO_4217))


def check_budget_currency(
    currencies: Iterable[object], forecast_currency: str, source: str | None = None
) -> None:
    """Raise one InputError naming every budget row (1-based) whose currency is not the forecast's.

    ``currencies``: the budget rows' currency values in file order (e.g. ``budgets["currency"]``);
    case and surrounding spaces are ignored (``usd`` is ``USD``). Amounts are never converted, so a
    EUR budget cannot be compared with a USD forecast.
    """
    want = forecast_currency.strip().upper()
    problems = []
    for i, cur in enumerate(currencies, start=1):
        got = normalize(cur)
        if got is None:
            problems.append(
                Problem(f"{cur!r} is not an ISO 4217 currency code", source, i, "currency")
            )
        elif got != want:
            problems.append(
                Problem(
                    f"budget in {got} but the forecast is in {want}; amounts are never converted",
                    source,
                    i,
                    "currency",
                )
            )
    if problems:
        raise InputError(
            problems,
            fix=f"give budgets in {want} (the forecast's currency), or forecast the budgets' currency "
            "with --currency",
        )
