"""The demo mesh as the fuzzer sees it.

Products and columns are read from the running server (`meshql.columns`, `meshql.products`
as admin), with a sample of each column's values for literals. Who may see what, and each
principal's row filters and masks, are written out here from the demo policies (SPEC section 7,
engine/src/demo.rs, `catalog/*/policies.toml`); `check_demo_policies` fails loudly if the demo's
policy files ever say something else, so the rewrites below cannot silently drift.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

PRINCIPALS = ("admin", "sales_analyst", "eu_analyst", "shipping_ds", "guest")

# SPEC section 7: what each demo principal may read.
ALL_PRODUCTS = (
    "sales.orders",
    "sales.order_items",
    "customers.customers",
    "shipping.shipments",
    "shipping.delivery_performance",
    "inventory.stock",
    "marketing.leads",
)
VISIBLE: Dict[str, Set[str]] = {
    "admin": set(ALL_PRODUCTS),
    "sales_analyst": {
        "sales.orders",
        "sales.order_items",
        "customers.customers",
        "shipping.shipments",
    },
    "eu_analyst": {"customers.customers", "sales.orders"},
    "shipping_ds": {
        "shipping.shipments",
        "shipping.delivery_performance",
        "sales.orders",
        "sales.order_items",
    },
    "guest": set(),
}

# The mask of the platform policy `mask_pii` (catalog/_global/policies.toml): `'***'` in the
# column's type, for everyone outside group `pii_reader` (only admin is in it).
PII_MASK = "CAST('***' AS VARCHAR)"
PII_READERS = {"admin"}


@dataclass(frozen=True)
class View:
    """A principal's view of a product: a row filter and masked columns, as SQL."""

    row_filter: Optional[str] = None
    masks: Tuple[Tuple[str, str], ...] = ()


# Row filters (demo policies `orders_own_region` and `customers_own_region`:
# `region = ${principal.region}` for group `regional_analysts`; eu_analyst has region EU).
ROW_FILTERS: Dict[Tuple[str, str], str] = {
    ("eu_analyst", "sales.orders"): "region = 'EU'",
    ("eu_analyst", "customers.customers"): "region = 'EU'",
}

# Keys products are joined on (a column of the same name and type in both).
JOIN_KEYS = ("customer_id", "order_id", "sku")

CATEGORY = {
    "bigint": "num",
    "int": "num",
    "string": "str",
    "timestamp": "ts",
    "date": "date",
    "boolean": "bool",
}


def category(contract_type: str) -> str:
    if contract_type.startswith("decimal"):
        return "num"
    return CATEGORY.get(contract_type, "str")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # contract type: bigint, int, decimal(12,2), string, date, timestamp, boolean
    cat: str  # num, str, date, ts, bool
    pii: bool = False
    primary_key: bool = False


@dataclass
class Product:
    domain: str
    name: str
    columns: List[Column]
    delta: bool
    versions: List[int]  # Delta versions that exist (empty for Parquet)
    samples: Dict[str, list] = field(default_factory=dict)  # column -> sample values

    @property
    def qualified(self) -> str:
        return f"{self.domain}.{self.name}"

    def column(self, name: str) -> Optional[Column]:
        return next((c for c in self.columns if c.name == name), None)

    def cols(self, cat: str) -> List[Column]:
        return [c for c in self.columns if c.cat == cat]


def view(principal: str, product: Product) -> View:
    masks = ()
    if principal not in PII_READERS:
        masks = tuple((c.name, PII_MASK) for c in product.columns if c.pii)
    return View(ROW_FILTERS.get((principal, product.qualified)), masks)


def rewrite(principal: str, product: Product, version_clause: str = "") -> str:
    """The admin SQL for `product` as `principal` sees it (a derived table), or the plain
    product name when the principal sees it unrestricted."""
    v = view(principal, product)
    if v.row_filter is None and not v.masks:
        return f"{product.qualified}{version_clause}"
    masks = dict(v.masks)
    items = ", ".join(
        f"{masks[c.name]} AS {c.name}" if c.name in masks else c.name for c in product.columns
    )
    where = f" WHERE {v.row_filter}" if v.row_filter else ""
    return f"(SELECT {items} FROM {product.qualified}{version_clause}{where})"


def restricted(principal: str, product: Product) -> bool:
    v = view(principal, product)
    return v.row_filter is not None or bool(v.masks)


Query = Callable[[str], List[tuple]]


def load_products(admin_query: Query, sample: int = 12) -> List[Product]:
    """Products, columns and sample values, read as admin."""
    formats = {
        (d, n): (fmt, ver)
        for d, n, fmt, ver in admin_query(
            "SELECT domain, name, format, data_version FROM meshql.products"
        )
    }
    columns: Dict[Tuple[str, str], List[Column]] = {}
    for d, p, name, typ, cls, pk in admin_query(
        "SELECT domain, product, name, type, classification, primary_key "
        "FROM meshql.columns ORDER BY domain, product, ordinal"
    ):
        columns.setdefault((d, p), []).append(
            Column(name, typ, category(typ), pii=(cls == "pii"), primary_key=bool(pk))
        )
    products = []
    for (d, p), cols in columns.items():
        fmt, version = formats[(d, p)]
        delta = fmt == "delta"
        versions = list(range(int(version) + 1)) if delta and version not in (None, "") else []
        product = Product(d, p, cols, delta, versions)
        for c in cols:
            if c.cat in ("str", "num", "date", "ts"):
                rows = admin_query(
                    f"SELECT DISTINCT {c.name} FROM {product.qualified} "
                    f"WHERE {c.name} IS NOT NULL ORDER BY {c.name} LIMIT {sample}"
                )
                product.samples[c.name] = [r[0] for r in rows]
        products.append(product)
    return products


def hidden_strings(admin_query: Query, principal: str, products: Sequence[Product]) -> Set[str]:
    """Distinctive values (customer names and e-mails) that only rows hidden from `principal`
    by a row filter hold: they must never appear in anything `principal` receives."""
    out: Set[str] = set()
    for p in products:
        f = ROW_FILTERS.get((principal, p.qualified))
        if f is None:
            continue
        for c in p.cols("str"):
            if c.name not in ("name", "email"):
                continue
            hidden = {
                r[0]
                for r in admin_query(f"SELECT DISTINCT {c.name} FROM {p.qualified} WHERE NOT ({f})")
            }
            shown = {
                r[0] for r in admin_query(f"SELECT DISTINCT {c.name} FROM {p.qualified} WHERE {f}")
            }
            out |= {s for s in hidden - shown if s and len(s) >= 6}
    return out


def check_demo_policies(mesh_dir: Path) -> List[str]:
    """Differences between the demo's users and policy files and what this module assumes."""
    problems: List[str] = []
    catalog_dir = mesh_dir / "catalog"
    users = {u["name"]: u for u in tomllib.loads((mesh_dir / "meshql.toml").read_text())["users"]}
    if set(users) != set(PRINCIPALS):
        problems.append(f"demo users are {sorted(users)}, the fuzzer assumes {sorted(PRINCIPALS)}")
    readers = {n for n, u in users.items() if "pii_reader" in u.get("groups", [])}
    if readers != PII_READERS:
        problems.append(f"group pii_reader is {sorted(readers)}, the fuzzer assumes {sorted(PII_READERS)}")
    regional = {
        n: u.get("attributes", {}).get("region")
        for n, u in users.items()
        if "regional_analysts" in u.get("groups", [])
    }
    if regional != {"eu_analyst": "EU"}:
        problems.append(f"regional analysts are {regional}, the fuzzer assumes eu_analyst (EU)")
    filters = set()
    masks = []
    for path in sorted(catalog_dir.glob("*/policies.toml")):
        domain = path.parent.name
        doc = tomllib.loads(path.read_text())
        for f in doc.get("row_filters", []):
            filters.add((f"{domain}.{f['product']}", tuple(f["applies_to"]), f["predicate"]))
        for m in doc.get("masks", []):
            masks.append(
                (m.get("classification"), tuple(m.get("unless", [])), m["expression"], domain)
            )
    expected_filters = {
        ("sales.orders", ("group:regional_analysts",), "region = ${principal.region}"),
        ("customers.customers", ("group:regional_analysts",), "region = ${principal.region}"),
    }
    if filters != expected_filters:
        problems.append(f"row filters are {sorted(filters)}, the fuzzer assumes {sorted(expected_filters)}")
    if masks != [("pii", ("group:pii_reader",), "'***'", "_global")]:
        problems.append(f"masks are {masks}, the fuzzer assumes one global `'***'` mask on pii")
    return problems
