"""A seeded generator of the demo warehouse's rows, as pandas frames (same seed and sizes, same rows).

Values are vectorised with numpy so a few million rows take seconds. Some strings carry non-ASCII
characters on purpose: BigQuery prices a STRING by its UTF-8 byte length, not its character count,
and a test that only ever saw ASCII could not tell the two apart. Some values are NULL on purpose too
(a NULL costs 0 bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import numpy as np
import pandas as pd

FIRST_DAY = np.datetime64("2024-01-01", "D")
DEFAULT_DAYS = 366  # 2024 is a leap year: one partition per day of it

FACT_TABLES = ("shop.orders", "shop.web_events", "finance.invoices")
STATUSES = np.array(["pending", "paid", "shipped", "refunded", "cancelled"], dtype=object)
STATUS_WEIGHTS = [0.10, 0.40, 0.35, 0.05, 0.10]
CURRENCIES = np.array(["USD", "EUR", "GBP"], dtype=object)
EVENT_TYPES = np.array(["page_view", "search", "add_to_cart", "checkout", "purchase"], dtype=object)
PAGES = np.array(
    ["/", "/search", "/cart", "/checkout", "/produits/café", "/über-uns", "/product/42", "/sale/夏"],
    dtype=object,
)
USER_AGENTS = np.array(
    [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
        "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
        "curl/8.8.0",
    ],
    dtype=object,
)
COUNTRIES = np.array(["US", "DE", "FR", "GB", "BR", "JP"], dtype=object)
SEGMENTS = np.array(["consumer", "small business", "enterprise"], dtype=object)
EMAIL_NAMES = np.array(["alex", "maría", "jürgen", "chloé", "sam", "zoë"], dtype=object)


def row_counts(rows: int | Mapping[str, int]) -> dict[str, int]:
    """Rows per table (`dataset.table`). An int sizes every fact table; customers get a twentieth of it."""
    if isinstance(rows, int):
        base = dict.fromkeys(FACT_TABLES, rows)
        base["shop.customers"] = max(50, rows // 20)
        return base
    counts = row_counts(int(rows.get("default", 1000)))
    unknown = set(rows) - set(counts) - {"default"}
    if unknown:
        raise ValueError(f"unknown demo tables {sorted(unknown)}; expected some of {sorted(counts)}")
    counts.update({name: int(value) for name, value in rows.items() if name != "default"})
    return counts


def _days(rng: np.random.Generator, n: int, days: int) -> np.ndarray:
    return FIRST_DAY + rng.integers(0, days, size=n).astype("timedelta64[D]")


def _timestamps_on(rng: np.random.Generator, dates: np.ndarray) -> pd.Series:
    micros = rng.integers(0, 86_400_000_000, size=len(dates)).astype("timedelta64[us]")
    stamps = dates.astype("datetime64[us]") + micros
    return pd.Series(pd.to_datetime(stamps).tz_localize("UTC"))


def _with_nulls(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    values = values.astype(object)
    values[rng.random(len(values)) < share] = None
    return values


def _money(cents: np.ndarray) -> np.ndarray:
    return np.array([Decimal(int(c)).scaleb(-2) for c in cents], dtype=object)


def _hex_ids(rng: np.random.Generator, n: int, prefix: str) -> np.ndarray:
    numbers = rng.integers(0, 2**62, size=n)
    return np.array([f"{prefix}{x:x}" for x in numbers.tolist()], dtype=object)


def _orders(rng: np.random.Generator, n: int, customers: int, days: int) -> pd.DataFrame:
    dates = _days(rng, n, days)
    return pd.DataFrame(
        {
            "order_id": np.arange(1, n + 1, dtype=np.int64),
            "customer_id": rng.integers(1, customers + 1, size=n),
            "status": rng.choice(STATUSES, size=n, p=STATUS_WEIGHTS),
            "amount": _money(rng.integers(500, 50_000, size=n)),
            "currency": _with_nulls(rng, rng.choice(CURRENCIES, size=n), 0.03),
            "created_at": _timestamps_on(rng, dates),
            "order_date": pd.Series(dates.astype("datetime64[ns]")),
        }
    )


def _web_events(rng: np.random.Generator, n: int, days: int) -> pd.DataFrame:
    dates = _days(rng, n, days)
    sessions = rng.integers(1, max(2, n // 5), size=n)
    return pd.DataFrame(
        {
            "event_id": _hex_ids(rng, n, "evt-"),
            "session_id": np.array([f"s-{s}" for s in sessions.tolist()], dtype=object),
            "event_type": rng.choice(EVENT_TYPES, size=n),
            "page": rng.choice(PAGES, size=n),
            "user_agent": _with_nulls(rng, rng.choice(USER_AGENTS, size=n), 0.05),
            "occurred_at": _timestamps_on(rng, dates),
            "event_date": pd.Series(dates.astype("datetime64[ns]")),
        }
    )


def _customers(rng: np.random.Generator, n: int, days: int) -> pd.DataFrame:
    ids = np.arange(1, n + 1, dtype=np.int64)
    names = rng.choice(EMAIL_NAMES, size=n)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "email": np.array(
                [f"{name}.{i}@example.com" for name, i in zip(names.tolist(), ids.tolist())], dtype=object
            ),
            "country": rng.choice(COUNTRIES, size=n),
            "segment": _with_nulls(rng, rng.choice(SEGMENTS, size=n), 0.1),
            "signed_up_on": pd.Series(_days(rng, n, days).astype("datetime64[ns]")),
            "is_active": rng.random(n) < 0.8,
        }
    )


def _invoices(rng: np.random.Generator, n: int, customers: int, days: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "invoice_id": np.arange(1, n + 1, dtype=np.int64),
            "customer_id": rng.integers(1, customers + 1, size=n),
            "amount": _money(rng.integers(1_000, 500_000, size=n)),
            "issued_on": pd.Series(_days(rng, n, days).astype("datetime64[ns]")),
            "paid": rng.random(n) < 0.7,
        }
    )


def generate_demo_frames(
    rows: int | Mapping[str, int] = 2000, seed: int = 7, days: int = DEFAULT_DAYS
) -> dict[str, pd.DataFrame]:
    """Frames keyed `dataset.table`. Each table draws from its own child generator, so resizing one
    table leaves the others' rows unchanged."""
    counts = row_counts(rows)
    orders_rng, events_rng, customers_rng, invoices_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(4)
    )
    customers = counts["shop.customers"]
    return {
        "shop.orders": _orders(orders_rng, counts["shop.orders"], customers, days),
        "shop.web_events": _web_events(events_rng, counts["shop.web_events"], days),
        "shop.customers": _customers(customers_rng, customers, days),
        "finance.invoices": _invoices(invoices_rng, counts["finance.invoices"], customers, days),
    }
