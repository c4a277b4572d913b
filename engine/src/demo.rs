//! The demo mesh (SPEC §7): an e-commerce company with five domains, generated
//! deterministically (seeded) as Parquet files (parquet crate) and Delta tables (deltalake),
//! with its configuration, product manifests and demo users.
//!
//! Writing is idempotent: files that exist are kept; a file whose content differs from the demo
//! default (a user's edit) is never overwritten unless `force` is set, and is reported.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::contract::arrow_type;
use crate::error::{EngineError, Result};

/// Options of `meshql demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: PathBuf,
    /// Multiplies row counts (1 = a few thousand rows per product).
    pub scale: u32,
    /// Overwrite files that differ from the demo defaults.
    pub force: bool,
}

/// What `write_demo` did.
#[derive(Debug, Default)]
pub struct DemoReport {
    pub config: PathBuf,
    pub written: Vec<PathBuf>,
    /// Files left as they were because they differ from the demo default.
    pub kept_edits: Vec<PathBuf>,
    /// Products whose data already existed and was left alone.
    pub existing_data: Vec<String>,
}

/// A demo user. The password is the user name.
#[derive(Debug, Clone, Copy)]
pub struct DemoUser {
    pub name: &'static str,
    pub groups: &'static [&'static str],
    pub attributes: &'static [(&'static str, &'static str)],
}

/// The demo policies: `(folder inside catalog/, policies.toml)`. Together with domain
/// membership (a principal in group `sales` reads all of `sales`) they give every demo user
/// exactly the access of SPEC §7.
const DEMO_POLICIES: &[(&str, &str)] = &[
    (
        "_global",
        r#"# Platform-wide policies. No domain can weaken them.

# Administrators read every product of every domain.
[[grants]]
to = ["group:admin"]
domains = ["*"]
products = ["*"]

# Columns classified `pii` are masked unless the reader holds role `pii_reader`.
[[masks]]
name = "mask_pii"
classification = "pii"
unless = ["group:pii_reader"]
expression = "'***'"
"#,
    ),
    (
        "sales",
        r#"# Policies of the sales domain. Members of group `sales` read all of it.

# The shipping team plans shipments from orders and their lines.
[[grants]]
to = ["group:shipping"]
products = ["orders", "order_items"]

# Regional analysts read orders of their own region only.
[[grants]]
to = ["group:regional_analysts"]
products = ["orders"]

[[row_filters]]
name = "orders_own_region"
product = "orders"
applies_to = ["group:regional_analysts"]
predicate = "region = ${principal.region}"
"#,
    ),
    (
        "customers",
        r#"# Policies of the customers domain.

# Sales works with customers (emails stay masked by the platform's PII policy).
[[grants]]
to = ["group:sales"]
products = ["customers"]

# Regional analysts read customers of their own region only.
[[grants]]
to = ["group:regional_analysts"]
products = ["customers"]

[[row_filters]]
name = "customers_own_region"
product = "customers"
applies_to = ["group:regional_analysts"]
predicate = "region = ${principal.region}"
"#,
    ),
    (
        "shipping",
        r#"# Policies of the shipping domain. Members of group `shipping` read all of it.

# Sales follows up on shipments of its orders.
[[grants]]
to = ["group:sales"]
products = ["shipments"]
"#,
    ),
];

/// The demo principals of SPEC §7.
pub const DEMO_USERS: &[DemoUser] = &[
    DemoUser {
        name: "admin",
        groups: &["admin", "pii_reader"],
        attributes: &[],
    },
    DemoUser {
        name: "sales_analyst",
        groups: &["sales", "analysts"],
        attributes: &[],
    },
    DemoUser {
        name: "eu_analyst",
        groups: &["regional_analysts"],
        attributes: &[("region", "EU")],
    },
    DemoUser {
        name: "shipping_ds",
        groups: &["shipping", "data_science"],
        attributes: &[],
    },
    DemoUser {
        name: "guest",
        groups: &[],
        attributes: &[],
    },
];

struct Col {
    name: &'static str,
    ty: &'static str,
    nullable: bool,
    pk: bool,
    classification: Option<&'static str>,
    description: &'static str,
}

const fn c(name: &'static str, ty: &'static str, description: &'static str) -> Col {
    Col {
        name,
        ty,
        nullable: false,
        pk: false,
        classification: None,
        description,
    }
}
const fn n(name: &'static str, ty: &'static str, description: &'static str) -> Col {
    Col {
        name,
        ty,
        nullable: true,
        pk: false,
        classification: None,
        description,
    }
}
const fn k(name: &'static str, ty: &'static str, description: &'static str) -> Col {
    Col {
        name,
        ty,
        nullable: false,
        pk: true,
        classification: None,
        description,
    }
}

struct ProductDef {
    domain: &'static str,
    name: &'static str,
    delta: bool,
    description: &'static str,
    owner: &'static str,
    freshness: &'static str,
    tags: &'static [&'static str],
    columns: &'static [Col],
    /// TOML appended to the manifest: lineage inputs and quality rules.
    extra: &'static str,
}

const DOMAINS: &[(&str, &str, &str)] = &[
    (
        "sales",
        "Orders and order lines from the web shop.",
        "sales-data@acme.example",
    ),
    (
        "customers",
        "Customer master data.",
        "crm-team@acme.example",
    ),
    (
        "shipping",
        "Shipments handed to carriers and their progress.",
        "logistics@acme.example",
    ),
    (
        "inventory",
        "Stock levels per warehouse.",
        "supply-chain@acme.example",
    ),
    (
        "marketing",
        "Leads and how they were acquired.",
        "growth@acme.example",
    ),
];

const PRODUCTS: &[ProductDef] = &[
    ProductDef {
        domain: "sales",
        name: "orders",
        delta: true,
        description: "One row per order placed in the web shop.",
        owner: "sales-data@acme.example",
        freshness: "24h",
        tags: &["core", "finance"],
        columns: &[
            k("order_id", "bigint", "Order key."),
            c(
                "customer_id",
                "bigint",
                "The ordering customer (customers.customers).",
            ),
            c("order_ts", "timestamp", "When the order was placed (UTC)."),
            c(
                "status",
                "string",
                "placed, shipped, delivered, returned or cancelled.",
            ),
            c(
                "total_amount",
                "decimal(12,2)",
                "Order total in EUR, sum of its lines.",
            ),
            c(
                "region",
                "string",
                "Sales region of the customer: EU, NA or APAC.",
            ),
        ],
        extra: r#"
[[inputs]]
product = "customers.customers"
description = "An order's region is its customer's region at the time of the order."
columns = { region = "region" }

[[quality]]
name = "order_id_unique"
rule = "unique"
column = "order_id"
description = "One row per order."

[[quality]]
name = "status_known"
rule = "accepted_values"
column = "status"
values = ["placed", "shipped", "delivered", "returned", "cancelled"]

[[quality]]
name = "region_known"
rule = "accepted_values"
column = "region"
values = ["EU", "NA", "APAC"]

[[quality]]
name = "total_not_negative"
rule = "sql"
predicate = "total_amount >= 0"

[[quality]]
name = "has_orders"
rule = "row_count"
min = 1
"#,
    },
    ProductDef {
        domain: "sales",
        name: "order_items",
        delta: false,
        description: "Order lines: what was bought in each order.",
        owner: "sales-data@acme.example",
        freshness: "24h",
        tags: &["core"],
        columns: &[
            k("order_id", "bigint", "The order (sales.orders)."),
            k("line_no", "int", "Line number within the order, from 1."),
            c("sku", "string", "Stock keeping unit (inventory.stock)."),
            c("quantity", "int", "Units ordered."),
            c("unit_price", "decimal(10,2)", "Price per unit in EUR."),
        ],
        extra: r#"
[[quality]]
name = "line_unique"
rule = "unique"
columns = ["order_id", "line_no"]

[[quality]]
name = "sku_present"
rule = "not_null"
column = "sku"

[[quality]]
name = "quantity_plausible"
rule = "range"
column = "quantity"
min = 1
max = 100

[[quality]]
name = "unit_price_positive"
rule = "range"
column = "unit_price"
min = "0.01"
"#,
    },
    ProductDef {
        domain: "customers",
        name: "customers",
        delta: false,
        description: "Every customer with contact data and segment.",
        owner: "crm-team@acme.example",
        freshness: "7d",
        tags: &["core", "pii"],
        columns: &[
            k("customer_id", "bigint", "Customer key."),
            c("name", "string", "Full name."),
            Col {
                name: "email",
                ty: "string",
                nullable: false,
                pk: false,
                classification: Some("pii"),
                description: "Contact e-mail address.",
            },
            c("country", "string", "ISO 3166 country code."),
            c("region", "string", "EU, NA or APAC."),
            c(
                "tier",
                "string",
                "Loyalty tier: bronze, silver, gold or platinum.",
            ),
            c("signup_date", "date", "Day the customer signed up."),
        ],
        extra: r#"
[[quality]]
name = "customer_id_unique"
rule = "unique"
column = "customer_id"

[[quality]]
name = "email_present"
rule = "not_null"
column = "email"

[[quality]]
name = "email_looks_like_an_address"
rule = "sql"
predicate = "email LIKE '%_@_%'"
severity = "warning"

[[quality]]
name = "region_known"
rule = "accepted_values"
column = "region"
values = ["EU", "NA", "APAC"]
"#,
    },
    ProductDef {
        domain: "shipping",
        name: "shipments",
        delta: true,
        description: "Shipments of orders; an order may be shipped again after a return.",
        owner: "logistics@acme.example",
        freshness: "6h",
        tags: &["operations"],
        columns: &[
            k("shipment_id", "bigint", "Shipment key."),
            c("order_id", "bigint", "The order shipped (sales.orders)."),
            c("carrier", "string", "Carrier name."),
            n(
                "shipped_at",
                "timestamp",
                "When we handed the parcel over; NULL while not yet shipped.",
            ),
            n(
                "carrier_shipped_on",
                "date",
                "Day the carrier reports having shipped; NULL when unknown.",
            ),
            c(
                "promised_at",
                "timestamp",
                "Delivery promised to the customer.",
            ),
            n(
                "delivered_at",
                "timestamp",
                "Delivery time; NULL while in transit.",
            ),
            c("returned", "boolean", "Whether the parcel was sent back."),
        ],
        extra: r#"
[[quality]]
name = "shipment_id_unique"
rule = "unique"
column = "shipment_id"

[[quality]]
name = "carrier_known"
rule = "accepted_values"
column = "carrier"
values = ["DHL", "UPS", "FedEx", "PostNL", "Yamato"]

[[quality]]
name = "delivered_after_shipped"
rule = "sql"
predicate = "delivered_at >= shipped_at"
description = "A parcel is delivered after we hand it over."

[[quality]]
name = "carrier_ship_day_not_after_delivery"
rule = "sql"
predicate = "carrier_shipped_on <= CAST(delivered_at AS DATE)"
severity = "warning"
description = "The day the carrier reports having shipped is not after the delivery. Partners report hand-overs a day or two late, so some deliveries fail this: our records and the carrier's disagree."
"#,
    },
    ProductDef {
        domain: "shipping",
        name: "delivery_performance",
        delta: false,
        description: "One row per delivered order: when it was promised and delivered, how late, by carrier and region. Derived from sales.orders and shipping.shipments.",
        owner: "logistics@acme.example",
        freshness: "24h",
        tags: &["operations", "derived"],
        columns: &[
            k("order_id", "bigint", "The delivered order (sales.orders)."),
            c("carrier", "string", "Carrier name."),
            c("region", "string", "Sales region of the order: EU, NA or APAC."),
            c(
                "shipped_at",
                "timestamp",
                "When we handed the parcel over.",
            ),
            c(
                "promised_at",
                "timestamp",
                "Delivery promised to the customer.",
            ),
            c("delivered_at", "timestamp", "Delivery time."),
            c(
                "days_late",
                "int",
                "Calendar days from the promised to the actual delivery day; negative when early.",
            ),
            c(
                "on_time",
                "boolean",
                "Delivered at or before the promised time.",
            ),
        ],
        extra: r#"
[[inputs]]
product = "sales.orders"
description = "The order and its region."
columns = { order_id = "order_id", region = "region" }

[[inputs]]
product = "shipping.shipments"
description = "The order's delivered shipment: carrier, hand-over, promise and delivery."
columns = { carrier = "carrier", shipped_at = "shipped_at", promised_at = "promised_at", delivered_at = "delivered_at", days_late = ["promised_at", "delivered_at"], on_time = ["promised_at", "delivered_at"] }

[[quality]]
name = "one_row_per_order"
rule = "unique"
column = "order_id"

[[quality]]
name = "region_valid"
rule = "accepted_values"
column = "region"
values = ["EU", "NA", "APAC"]

[[quality]]
name = "days_late_plausible"
rule = "range"
column = "days_late"
min = -30
max = 365
description = "More than a year late is a data error, not a slow parcel."

[[quality]]
name = "on_time_agrees"
rule = "sql"
predicate = "on_time = (delivered_at <= promised_at)"

[[quality]]
name = "delivered_after_shipped"
rule = "sql"
predicate = "delivered_at > shipped_at"

[[quality]]
name = "not_empty"
rule = "row_count"
min = 1
"#,
    },
    ProductDef {
        domain: "inventory",
        name: "stock",
        delta: false,
        description: "Units on hand per SKU and warehouse.",
        owner: "supply-chain@acme.example",
        freshness: "1h",
        tags: &["operations"],
        columns: &[
            k("sku", "string", "Stock keeping unit."),
            k("warehouse", "string", "Warehouse code."),
            c("on_hand", "int", "Units on hand."),
            c("updated_at", "timestamp", "Last stock count."),
        ],
        extra: r#"
[[quality]]
name = "stock_key_unique"
rule = "unique"
columns = ["sku", "warehouse"]

[[quality]]
name = "warehouse_known"
rule = "accepted_values"
column = "warehouse"
values = ["AMS", "FRA", "NYC", "SIN"]

[[quality]]
name = "sku_format"
rule = "sql"
predicate = "sku LIKE 'SKU-%'"
"#,
    },
    ProductDef {
        domain: "marketing",
        name: "leads",
        delta: true,
        description: "Leads and the channel that acquired them.",
        owner: "growth@acme.example",
        freshness: "24h",
        tags: &["marketing"],
        columns: &[
            k("lead_id", "bigint", "Lead key."),
            n(
                "customer_id",
                "bigint",
                "The customer the lead became; NULL if not converted.",
            ),
            c("acquisition_channel", "string", "organic or leadgen."),
            n(
                "campaign",
                "string",
                "Campaign for paid leads; NULL for organic ones.",
            ),
            c("created_at", "timestamp", "When the lead was captured."),
        ],
        extra: r#"
[[quality]]
name = "lead_id_unique"
rule = "unique"
column = "lead_id"

[[quality]]
name = "channel_known"
rule = "accepted_values"
column = "acquisition_channel"
values = ["organic", "leadgen"]

[[quality]]
name = "campaign_only_for_paid_leads"
rule = "sql"
predicate = "(campaign IS NULL) = (acquisition_channel = 'organic')"
description = "Leadgen leads name their campaign; organic ones have none."
"#,
    },
];

/// Writes the demo mesh into `opts.dir`. `progress` receives one line per step.
pub async fn write_demo(
    opts: &DemoOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<DemoReport> {
    let io =
        |path: &Path, e: std::io::Error| EngineError::Internal(format!("{}: {e}", path.display()));
    fs::create_dir_all(&opts.dir).map_err(|e| io(&opts.dir, e))?;
    // Delta needs absolute URLs; a relative --dir is relative to the working directory.
    let dir = &std::path::absolute(&opts.dir).map_err(|e| io(&opts.dir, e))?;
    let mut report = DemoReport {
        config: dir.join("meshql.toml"),
        ..Default::default()
    };

    write_text(
        &report.config.clone(),
        &config_text()?,
        opts.force,
        &mut report,
    )?;
    for p in PRODUCTS {
        let path = dir
            .join("catalog")
            .join(p.domain)
            .join("products")
            .join(format!("{}.toml", p.name));
        write_text(&path, &manifest_text(p), opts.force, &mut report)?;
    }
    for (folder, text) in DEMO_POLICIES {
        let path = dir
            .join("catalog")
            .join(folder)
            .join(meshql_catalog::POLICY_FILE);
        write_text(&path, text, opts.force, &mut report)?;
    }

    let data = DemoData::generate(opts.scale.max(1));
    for p in PRODUCTS {
        let location = dir.join("buckets").join(p.domain).join(p.name);
        let qualified = format!("{}.{}", p.domain, p.name);
        if location.exists()
            && fs::read_dir(&location)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        {
            if !opts.force {
                report.existing_data.push(qualified);
                continue;
            }
            fs::remove_dir_all(&location).map_err(|e| io(&location, e))?;
        }
        fs::create_dir_all(&location).map_err(|e| io(&location, e))?;
        let schema = schema_of(p);
        let batches = data.batches(p.name, &schema)?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        progress(&format!(
            "writing {qualified} ({}, {rows} rows) to {}",
            if p.delta { "Delta" } else { "Parquet" },
            location.display()
        ));
        if p.delta {
            write_delta(&location, batches).await?;
        } else {
            write_parquet(&location, p.name, &schema, batches)?;
        }
        report.written.push(location);
    }
    Ok(report)
}

fn write_text(path: &Path, text: &str, force: bool, report: &mut DemoReport) -> Result<()> {
    let io = |e: std::io::Error| EngineError::Internal(format!("{}: {e}", path.display()));
    match fs::read_to_string(path) {
        Ok(existing) if existing == text => return Ok(()),
        Ok(_) if !force => {
            report.kept_edits.push(path.to_path_buf());
            return Ok(());
        }
        _ => {}
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    fs::write(path, text).map_err(io)?;
    report.written.push(path.to_path_buf());
    Ok(())
}

fn config_text() -> Result<String> {
    let mut s = String::from(
        "# meshql demo mesh: an e-commerce company with five domains.\n\
         # DEMO CREDENTIALS: every user's password is its user name. Do not use them for real data.\n\
         \n\
         [server]\n\
         bind = \"127.0.0.1:50051\"\n\
         # Tokens issued by the Flight SQL handshake expire after this long.\n\
         token_ttl = \"12h\"\n\
         # Makes `meshql serve` warn that the demo credentials are in use.\n\
         demo_credentials = true\n\
         \n\
         [catalog]\n\
         # One folder per domain with its product manifests in products/*.toml and its\n\
         # policies.toml; platform-wide policies are in _global/policies.toml.\n\
         dir = \"catalog\"\n\
         \n\
         [audit]\n\
         # One JSON line per query or refused attempt. `sql = \"hash\"` records a SHA-256 instead.\n\
         file = \"audit/audit.jsonl\"\n\
         sql = \"text\"\n",
    );
    for (name, description, owner) in DOMAINS {
        s.push_str(&format!(
            "\n[[domains]]\nname = \"{name}\"\ndescription = \"{description}\"\nowner = \"{owner}\"\n\
             # The domain's own bucket; relative paths are resolved against this file.\n\
             bucket = \"buckets/{name}\"\n"
        ));
    }
    for DemoUser {
        name,
        groups,
        attributes,
    } in DEMO_USERS
    {
        // A fixed salt keeps the generated file identical between runs (idempotence); these are
        // demo credentials and public anyway.
        let salt = format!("meshql-demo-salt-{name}");
        let hash = meshql_catalog::hash_password(name, salt.as_bytes())?;
        let groups = groups
            .iter()
            .map(|g| format!("\"{g}\""))
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!("\n[[users]]\nname = \"{name}\"\n# password: {name}\npassword_hash = \"{hash}\"\ngroups = [{groups}]\n"));
        if !attributes.is_empty() {
            let attrs = attributes
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\""))
                .collect::<Vec<_>>()
                .join(", ");
            s.push_str(&format!("attributes = {{ {attrs} }}\n"));
        }
    }
    Ok(s)
}

fn manifest_text(p: &ProductDef) -> String {
    let tags = p
        .tags
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!(
        "# Data contract of {domain}.{name}.\n\
         name = \"{name}\"\n\
         domain = \"{domain}\"\n\
         version = \"1.0.0\"\n\
         description = \"{description}\"\n\
         owner = \"{owner}\"\n\
         format = \"{format}\"\n\
         # Relative to the domain's bucket.\n\
         location = \"{name}\"\n\
         tags = [{tags}]\n\
         \n\
         [sla]\n\
         freshness = \"{freshness}\"\n",
        domain = p.domain,
        name = p.name,
        description = p.description,
        owner = p.owner,
        format = if p.delta { "delta" } else { "parquet" },
        freshness = p.freshness,
    );
    for col in p.columns {
        s.push_str(&format!(
            "\n[[schema]]\nname = \"{}\"\ntype = \"{}\"\n",
            col.name, col.ty
        ));
        if col.pk {
            s.push_str("primary_key = true\n");
        } else {
            s.push_str(&format!("nullable = {}\n", col.nullable));
        }
        if let Some(cl) = col.classification {
            s.push_str(&format!("classification = \"{cl}\"\n"));
        }
        s.push_str(&format!("description = \"{}\"\n", col.description));
    }
    s.push_str(p.extra);
    s
}

fn schema_of(p: &ProductDef) -> SchemaRef {
    Arc::new(Schema::new(
        p.columns
            .iter()
            .map(|c| {
                let ty = c.ty.parse().map(arrow_type).unwrap_or(DataType::Null);
                Field::new(c.name, ty, c.nullable)
            })
            .collect::<Vec<_>>(),
    ))
}

fn write_parquet(
    location: &Path,
    name: &str,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    for (i, batch) in batches.into_iter().enumerate() {
        let path = location.join(format!("{name}-{i:03}.parquet"));
        let file = fs::File::create(&path)
            .map_err(|e| EngineError::Internal(format!("{}: {e}", path.display())))?;
        let mut w = ArrowWriter::try_new(file, Arc::clone(schema), Some(props.clone()))
            .map_err(|e| EngineError::Internal(format!("{}: {e}", path.display())))?;
        w.write(&batch)
            .map_err(|e| EngineError::Internal(format!("{}: {e}", path.display())))?;
        w.close()
            .map_err(|e| EngineError::Internal(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Each batch becomes one Delta commit.
async fn write_delta(location: &Path, batches: Vec<RecordBatch>) -> Result<()> {
    let url = url::Url::from_directory_path(location).map_err(|()| {
        EngineError::Internal(format!("{} is not an absolute path", location.display()))
    })?;
    let err = |e: deltalake::DeltaTableError| {
        EngineError::Internal(format!("writing Delta table {}: {e}", location.display()))
    };
    let mut table = DeltaTable::try_from_url(url).await.map_err(err)?;
    for batch in batches {
        table = table
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// `shipping.delivery_performance`: one row per delivered order, joining its delivered
/// shipment with the order (what a pipeline of the shipping domain computes from
/// `sales.orders` and `shipping.shipments`). Only first shipments are ever delivered in the
/// demo, so there is one row per order.
fn delivery_performance(orders: &[Order], shipments: &[Shipment]) -> Vec<Delivery> {
    shipments
        .iter()
        .filter_map(|s| {
            let (shipped, delivered) = (s.shipped?, s.delivered?);
            // Order ids are 1..=n in order.
            let order = orders.get(usize::try_from(s.order - 1).ok()?)?;
            Some(Delivery {
                order: s.order,
                carrier: s.carrier,
                region: order.region,
                shipped,
                promised: s.promised,
                delivered,
            })
        })
        .collect()
}

/// A small deterministic generator (SplitMix64), so the demo is the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;
/// 2025-01-01T00:00:00Z in microseconds and days since the epoch.
const BASE_US: i64 = 20_089 * DAY_US;
const BASE_DAYS: i32 = 20_089;

struct Customer {
    id: i64,
    name: String,
    email: String,
    country: &'static str,
    region: &'static str,
    tier: &'static str,
    signup: i32,
}

struct Order {
    id: i64,
    customer: i64,
    ts: i64,
    status: &'static str,
    total_cents: i128,
    region: &'static str,
}

struct Item {
    order: i64,
    line: i32,
    sku: String,
    qty: i32,
    price_cents: i128,
}

struct Shipment {
    id: i64,
    order: i64,
    carrier: &'static str,
    shipped: Option<i64>,
    carrier_day: Option<i32>,
    promised: i64,
    delivered: Option<i64>,
    returned: bool,
}

struct Stock {
    sku: String,
    warehouse: &'static str,
    on_hand: i32,
    updated: i64,
}

struct Lead {
    id: i64,
    customer: Option<i64>,
    channel: &'static str,
    campaign: Option<&'static str>,
    created: i64,
}

/// One row of `shipping.delivery_performance`.
struct Delivery {
    order: i64,
    carrier: &'static str,
    region: &'static str,
    shipped: i64,
    promised: i64,
    delivered: i64,
}

struct DemoData {
    customers: Vec<Customer>,
    orders: Vec<Order>,
    items: Vec<Item>,
    shipments: Vec<Shipment>,
    stock: Vec<Stock>,
    leads: Vec<Lead>,
    deliveries: Vec<Delivery>,
}

const FIRST: &[&str] = &[
    "Ada", "Ben", "Chen", "Dana", "Emil", "Fatima", "Goro", "Hana", "Ivan", "Julia", "Kofi",
    "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara",
];
const LAST: &[&str] = &[
    "Andersen", "Bakker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hoshino", "Ito",
    "Jansen", "Kowalski", "Lopez", "Muller", "Nakamura", "Okafor", "Petrov", "Rossi", "Singh",
    "Tanaka", "Weber",
];
const EU: &[&str] = &["DE", "FR", "NL", "ES", "IT", "SE", "PL"];
const NA: &[&str] = &["US", "CA", "MX"];
const APAC: &[&str] = &["JP", "AU", "SG", "IN", "KR"];
const CARRIERS: &[&str] = &["DHL", "UPS", "FedEx", "PostNL", "Yamato"];
const WAREHOUSES: &[&str] = &["AMS", "FRA", "NYC", "SIN"];
const CAMPAIGNS: &[&str] = &["spring_sale", "black_friday", "webinar_q3", "partner_promo"];

impl DemoData {
    fn generate(scale: u32) -> Self {
        let s = scale as i64;
        let mut rng = Rng(0x005E_ED0F_3E5A);
        let n_customers = 1_000 * s;
        let n_orders = 5_000 * s;
        let n_skus = 200;
        let sku_price: Vec<i128> = (0..n_skus)
            .map(|_| 199 + rng.below(19_800) as i128)
            .collect();

        let customers: Vec<Customer> = (1..=n_customers)
            .map(|id| {
                let first = *rng.pick(FIRST);
                let last = *rng.pick(LAST);
                let r = rng.below(100);
                let (region, countries) = if r < 40 {
                    ("EU", EU)
                } else if r < 75 {
                    ("NA", NA)
                } else {
                    ("APAC", APAC)
                };
                let t = rng.below(100);
                let tier = if t < 50 {
                    "bronze"
                } else if t < 80 {
                    "silver"
                } else if t < 95 {
                    "gold"
                } else {
                    "platinum"
                };
                Customer {
                    id,
                    name: format!("{first} {last}"),
                    email: format!(
                        "{}.{}{id}@mail.example",
                        first.to_lowercase(),
                        last.to_lowercase()
                    ),
                    country: countries[rng.below(countries.len() as u64) as usize],
                    region,
                    tier,
                    signup: BASE_DAYS - 1_000 + rng.below(1_000) as i32,
                }
            })
            .collect();

        let mut orders = Vec::new();
        let mut items = Vec::new();
        let mut shipments = Vec::new();
        // Orders spread over 300 days; the newest ones are not shipped or delivered yet.
        let span = 300 * DAY_US;
        for id in 1..=n_orders {
            let customer = &customers[rng.below(n_customers as u64) as usize];
            let ts = BASE_US + span * (id - 1) / n_orders + rng.below(HOUR_US as u64) as i64;
            let age_days = (span - (ts - BASE_US)) / DAY_US;
            let lines = 1 + rng.below(4) as i32;
            let mut total = 0i128;
            for line in 1..=lines {
                let sku = rng.below(n_skus);
                let qty = 1 + rng.below(5) as i32;
                let price = sku_price[sku as usize];
                total += price * qty as i128;
                items.push(Item {
                    order: id,
                    line,
                    sku: format!("SKU-{sku:05}"),
                    qty,
                    price_cents: price,
                });
            }
            let status;
            if rng.chance(4) {
                status = "cancelled";
            } else {
                let promised = ts + (3 + rng.below(3) as i64) * DAY_US;
                let carrier = *rng.pick(CARRIERS);
                let shipped = if age_days < 2 && rng.chance(70) {
                    None
                } else {
                    Some(ts + (4 + rng.below(68) as i64) * HOUR_US)
                };
                let carrier_day = shipped.and_then(|t| {
                    // Partners sometimes never report the hand-over, and report it a day or two late.
                    (!rng.chance(3)).then(|| ((t + rng.below(3) as i64 * DAY_US) / DAY_US) as i32)
                });
                let delivered = shipped.and_then(|t| {
                    let late = rng.chance(10);
                    let d = t
                        + (1 + rng.below(if late { 9 } else { 4 }) as i64) * DAY_US
                        + rng.below(HOUR_US as u64 * 10) as i64;
                    (d < BASE_US + span).then_some(d)
                });
                let returned = delivered.is_some() && rng.chance(5);
                status = match (shipped, delivered, returned) {
                    (None, _, _) => "placed",
                    (Some(_), None, _) => "shipped",
                    (Some(_), Some(_), true) => "returned",
                    (Some(_), Some(_), false) => "delivered",
                };
                let shipment_id = shipments.len() as i64 + 1;
                shipments.push(Shipment {
                    id: shipment_id,
                    order: id,
                    carrier,
                    shipped,
                    carrier_day,
                    promised,
                    delivered,
                    returned,
                });
                // Half of the returns are re-shipped: a replacement that may still be waiting.
                if let (true, Some(d)) = (returned && rng.chance(50), delivered) {
                    let reship = d + (2 + rng.below(5) as i64) * DAY_US;
                    let shipped2 = (reship < BASE_US + span && rng.chance(60)).then_some(reship);
                    shipments.push(Shipment {
                        id: shipments.len() as i64 + 1,
                        order: id,
                        carrier,
                        shipped: shipped2,
                        carrier_day: shipped2.map(|t| (t / DAY_US) as i32 + rng.below(2) as i32),
                        promised: reship + 3 * DAY_US,
                        delivered: None,
                        returned: false,
                    });
                }
            }
            orders.push(Order {
                id,
                customer: customer.id,
                ts,
                status,
                total_cents: total,
                region: customer.region,
            });
        }

        let stock = (0..n_skus)
            .flat_map(|sku| WAREHOUSES.iter().map(move |w| (sku, *w)))
            .map(|(sku, warehouse)| Stock {
                sku: format!("SKU-{sku:05}"),
                warehouse,
                on_hand: rng.below(500) as i32,
                updated: BASE_US + span - rng.below(48 * HOUR_US as u64) as i64,
            })
            .collect();

        let leads = (1..=2_000 * s)
            .map(|id| {
                let organic = rng.chance(55);
                Lead {
                    id,
                    customer: rng
                        .chance(60)
                        .then(|| 1 + rng.below(n_customers as u64) as i64),
                    channel: if organic { "organic" } else { "leadgen" },
                    campaign: (!organic).then(|| *rng.pick(CAMPAIGNS)),
                    created: BASE_US + rng.below(span as u64) as i64,
                }
            })
            .collect();

        let deliveries = delivery_performance(&orders, &shipments);
        DemoData {
            customers,
            orders,
            items,
            shipments,
            stock,
            leads,
            deliveries,
        }
    }

    /// The product's rows as batches: one per Delta commit or Parquet file.
    fn batches(&self, product: &str, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
        let batch = |cols: Vec<ArrayRef>| {
            RecordBatch::try_new(Arc::clone(schema), cols)
                .map_err(|e| EngineError::Internal(format!("demo {product}: {e}")))
        };
        let ts = |v: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
        };
        let dec = |v: Vec<i128>, p: u8, s: i8| -> Result<ArrayRef> {
            Decimal128Array::from(v)
                .with_precision_and_scale(p, s)
                .map(|a| Arc::new(a) as ArrayRef)
                .map_err(|e| EngineError::Internal(e.to_string()))
        };
        let str_col = |v: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(v)) };
        match product {
            "orders" => {
                // Two commits: the bulk, then the most recent fifth of the orders.
                let cut = self.orders.len() * 4 / 5;
                [&self.orders[..cut], &self.orders[cut..]]
                    .into_iter()
                    .map(|o| {
                        batch(vec![
                            Arc::new(Int64Array::from_iter_values(o.iter().map(|o| o.id))),
                            Arc::new(Int64Array::from_iter_values(o.iter().map(|o| o.customer))),
                            ts(o.iter().map(|o| Some(o.ts)).collect()),
                            str_col(o.iter().map(|o| o.status).collect()),
                            dec(o.iter().map(|o| o.total_cents).collect(), 12, 2)?,
                            str_col(o.iter().map(|o| o.region).collect()),
                        ])
                    })
                    .collect()
            }
            "order_items" => {
                // Several files, split by order ranges.
                let per = self.items.len().div_ceil(3);
                self.items
                    .chunks(per.max(1))
                    .map(|it| {
                        batch(vec![
                            Arc::new(Int64Array::from_iter_values(it.iter().map(|i| i.order))),
                            Arc::new(Int32Array::from_iter_values(it.iter().map(|i| i.line))),
                            str_col(it.iter().map(|i| i.sku.as_str()).collect()),
                            Arc::new(Int32Array::from_iter_values(it.iter().map(|i| i.qty))),
                            dec(it.iter().map(|i| i.price_cents).collect(), 10, 2)?,
                        ])
                    })
                    .collect()
            }
            "customers" => {
                let c = &self.customers;
                Ok(vec![batch(vec![
                    Arc::new(Int64Array::from_iter_values(c.iter().map(|c| c.id))),
                    str_col(c.iter().map(|c| c.name.as_str()).collect()),
                    str_col(c.iter().map(|c| c.email.as_str()).collect()),
                    str_col(c.iter().map(|c| c.country).collect()),
                    str_col(c.iter().map(|c| c.region).collect()),
                    str_col(c.iter().map(|c| c.tier).collect()),
                    Arc::new(Date32Array::from_iter_values(c.iter().map(|c| c.signup))),
                ])?])
            }
            "shipments" => {
                let s = &self.shipments;
                Ok(vec![batch(vec![
                    Arc::new(Int64Array::from_iter_values(s.iter().map(|s| s.id))),
                    Arc::new(Int64Array::from_iter_values(s.iter().map(|s| s.order))),
                    str_col(s.iter().map(|s| s.carrier).collect()),
                    ts(s.iter().map(|s| s.shipped).collect()),
                    Arc::new(Date32Array::from(
                        s.iter().map(|s| s.carrier_day).collect::<Vec<_>>(),
                    )),
                    ts(s.iter().map(|s| Some(s.promised)).collect()),
                    ts(s.iter().map(|s| s.delivered).collect()),
                    Arc::new(BooleanArray::from(
                        s.iter().map(|s| s.returned).collect::<Vec<_>>(),
                    )),
                ])?])
            }
            "stock" => {
                let s = &self.stock;
                Ok(vec![batch(vec![
                    str_col(s.iter().map(|s| s.sku.as_str()).collect()),
                    str_col(s.iter().map(|s| s.warehouse).collect()),
                    Arc::new(Int32Array::from_iter_values(s.iter().map(|s| s.on_hand))),
                    ts(s.iter().map(|s| Some(s.updated)).collect()),
                ])?])
            }
            "leads" => {
                let l = &self.leads;
                Ok(vec![batch(vec![
                    Arc::new(Int64Array::from_iter_values(l.iter().map(|l| l.id))),
                    Arc::new(Int64Array::from(
                        l.iter().map(|l| l.customer).collect::<Vec<_>>(),
                    )),
                    str_col(l.iter().map(|l| l.channel).collect()),
                    Arc::new(StringArray::from(
                        l.iter().map(|l| l.campaign).collect::<Vec<_>>(),
                    )),
                    ts(l.iter().map(|l| Some(l.created)).collect()),
                ])?])
            }
            "delivery_performance" => {
                let d = &self.deliveries;
                let day = |us: i64| us.div_euclid(DAY_US) as i32;
                Ok(vec![batch(vec![
                    Arc::new(Int64Array::from_iter_values(d.iter().map(|r| r.order))),
                    str_col(d.iter().map(|r| r.carrier).collect()),
                    str_col(d.iter().map(|r| r.region).collect()),
                    ts(d.iter().map(|r| Some(r.shipped)).collect()),
                    ts(d.iter().map(|r| Some(r.promised)).collect()),
                    ts(d.iter().map(|r| Some(r.delivered)).collect()),
                    Arc::new(Int32Array::from_iter_values(
                        d.iter().map(|r| day(r.delivered) - day(r.promised)),
                    )),
                    Arc::new(BooleanArray::from(
                        d.iter()
                            .map(|r| r.delivered <= r.promised)
                            .collect::<Vec<_>>(),
                    )),
                ])?])
            }
            other => Err(EngineError::Internal(format!(
                "no demo data for product `{other}`"
            ))),
        }
    }
}
