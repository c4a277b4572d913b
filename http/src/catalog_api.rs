//! The catalog as JSON, for the viewer: domains and products with search, a product's page
//! (contract, SLA and freshness, quality, lineage, deprecation, usage, connect snippets) and a
//! preview of its first rows.
//!
//! Everything is decided by the same catalog policies the engine applies: a product the viewer
//! cannot see is answered exactly like one that does not exist, denied columns are absent (and
//! never match a search), and freshness and the preview are queries run through the engine as
//! the viewer, so masks and row filters apply.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use futures::StreamExt;
use meshql_catalog::{ColumnAccess, Product};
use meshql_engine::telemetry::QueryObserver;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Viewer;
use crate::encode::{columns, json_rows};
use crate::error::{engine_code_name, ApiError};
use crate::AppState;

/// Rows shown by a product preview unless asked otherwise, and at most.
const PREVIEW_ROWS: usize = 20;
const MAX_PREVIEW_ROWS: usize = 200;

#[derive(Debug, Deserialize)]
pub(crate) struct CatalogQuery {
    /// Search text: every word must match a name, description, tag, owner or visible column.
    #[serde(default)]
    q: String,
}

/// What of a product a search word matched, for showing why it is listed.
fn matches(p: &Product, visible: &[(&str, &str)], word: &str) -> Vec<String> {
    let m = &p.manifest;
    let has = |s: &str| s.to_lowercase().contains(word);
    let mut out = Vec::new();
    if has(&m.name) || has(&m.domain) || has(&p.qualified_name()) {
        out.push("name".to_string());
    }
    if has(&m.description) {
        out.push("description".to_string());
    }
    if m.tags.iter().any(|t| has(t)) {
        out.push("tags".to_string());
    }
    if has(&m.owner) {
        out.push("owner".to_string());
    }
    for (name, description) in visible {
        if has(name) || has(description) {
            out.push(format!("column {name}"));
        }
    }
    out
}

/// `GET /api/v1/catalog?q=`: the domains and products the viewer can see, filtered by `q`.
pub(crate) async fn catalog(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<CatalogQuery>,
) -> Json<Value> {
    let mesh = state.inner.engine.mesh();
    let words: Vec<String> = query.q.split_whitespace().map(str::to_lowercase).collect();
    let mut products = Vec::new();
    let mut domains: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &mesh.domains {
        for p in &d.products {
            let Some(access) = mesh.access(&viewer.principal, d.name(), &p.manifest.name) else {
                continue;
            };
            *domains.entry(d.name()).or_default() += 1;
            let visible: Vec<(&str, &str)> = access
                .columns
                .iter()
                .filter_map(|(c, _)| p.manifest.column(c))
                .map(|c| (c.name.as_str(), c.description.as_str()))
                .collect();
            let mut matched = Vec::new();
            let mut all = true;
            for w in &words {
                let m = matches(p, &visible, w);
                if m.is_empty() {
                    all = false;
                    break;
                }
                matched.extend(m);
            }
            if !all {
                continue;
            }
            matched.dedup();
            let m = &p.manifest;
            products.push(json!({
                "domain": m.domain,
                "name": m.name,
                "qualified_name": p.qualified_name(),
                "description": m.description,
                "owner": m.owner,
                "version": m.version,
                "format": m.format.as_str(),
                "tags": m.tags,
                "columns": visible.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                "matches": matched,
            }));
        }
    }
    let domains: Vec<Value> = mesh
        .domains
        .iter()
        .filter_map(|d| {
            let n = domains.get(d.name())?;
            Some(json!({
                "name": d.name(),
                "description": d.config.description,
                "owner": d.config.owner,
                "products": n,
            }))
        })
        .collect();
    Json(json!({"query": query.q, "domains": domains, "products": products}))
}

/// Most rows a product page section (quality results, lineage edges) lists.
const MAX_SECTION_ROWS: usize = 200;

/// Rows as JSON objects keyed by column name.
fn rows_as_objects(columns: &Value, rows: Vec<Value>) -> Vec<Value> {
    let names: Vec<String> = columns
        .as_array()
        .map(|c| {
            c.iter()
                .map(|f| f["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    rows.into_iter()
        .map(|row| {
            let mut obj = serde_json::Map::new();
            if let Value::Array(values) = row {
                for (n, v) in names.iter().zip(values) {
                    obj.insert(n.clone(), v);
                }
            }
            Value::Object(obj)
        })
        .collect()
}

/// Runs one query as the viewer and returns its columns and up to `limit` rows as JSON.
pub(crate) async fn run_small(
    state: &AppState,
    viewer: &Viewer,
    sql: &str,
    limit: usize,
) -> Result<(Value, Vec<Value>), ApiError> {
    let observer = QueryObserver::start("http");
    observer.authenticated(&viewer.principal.user);
    let session = match state.inner.engine.session(viewer.principal.clone()) {
        Ok(s) => s,
        Err(e) => {
            observer.failed(engine_code_name(&e));
            return Err(e.into());
        }
    };
    let started = std::time::Instant::now();
    let planned = {
        use tracing::Instrument;
        session.plan_sql(sql).instrument(observer.plan_span()).await
    };
    let planned = match planned {
        Ok(p) => p,
        Err(e) => {
            observer.failed(engine_code_name(&e));
            return Err(e.into());
        }
    };
    observer.planned(started, &session.reads());
    let schema = std::sync::Arc::clone(&planned.schema);
    let stream = {
        use tracing::Instrument;
        session
            .execute(planned)
            .instrument(observer.execute_span())
            .await
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            observer.failed(engine_code_name(&e));
            return Err(e.into());
        }
    };
    let mut stream = observer.observe(stream, engine_code_name);
    let mut rows = Vec::new();
    while rows.len() < limit {
        match stream.next().await {
            Some(Ok(batch)) => {
                let n = batch.num_rows().min(limit - rows.len());
                rows.extend(json_rows(&batch, 0, n)?);
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Ok((columns(&schema), rows)),
        }
    }
    // The limit is reached: a `LIMIT` query ends right here (and is audited `ok`); otherwise stop.
    match stream.next().await {
        None => {}
        Some(Ok(_)) => stream.finish_early(),
        Some(Err(e)) => return Err(e.into()),
    }
    Ok((columns(&schema), rows))
}

/// The product `domain.name` if the viewer can see it; otherwise the not-found error that a
/// product that does not exist gets.
fn visible_product<'a>(
    mesh: &'a meshql_catalog::Mesh,
    viewer: &Viewer,
    domain: &str,
    name: &str,
) -> Result<(&'a Product, meshql_catalog::ProductAccess<'a>), ApiError> {
    let not_found = || ApiError::ProductNotFound(format!("{domain}.{name}"));
    let product = mesh.product(domain, name).ok_or_else(not_found)?;
    let access = mesh
        .access(&viewer.principal, domain, name)
        .ok_or_else(not_found)?;
    Ok((product, access))
}

/// The Flight SQL address clients should use: the server's, with an unspecified bind address
/// (`0.0.0.0`) replaced by the host the browser used.
fn flight_address(state: &AppState, headers: &HeaderMap) -> (bool, String) {
    let url = &state.inner.flight_url;
    let (scheme, rest) = url.split_once("://").unwrap_or(("grpc", url.as_str()));
    let tls = scheme == "grpc+tls";
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "50051"));
    let host = if matches!(host, "0.0.0.0" | "[::]" | "::") {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| match h.rsplit_once(':') {
                Some((name, p)) if p.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
                _ => h.to_string(),
            })
            .unwrap_or_else(|| "127.0.0.1".to_string())
    } else {
        host.to_string()
    };
    (tls, format!("{host}:{port}"))
}

fn connect_snippets(state: &AppState, headers: &HeaderMap, user: &str, product: &str) -> Value {
    let (tls, address) = flight_address(state, headers);
    let scheme = if tls { "grpc+tls" } else { "grpc" };
    let python = format!(
        "import adbc_driver_flightsql.dbapi as flightsql\n\n\
         conn = flightsql.connect(\n    \"{scheme}://{address}\",\n    \
         db_kwargs={{\"username\": \"{user}\", \"password\": \"...\"}},\n    autocommit=True,\n)\n\
         cur = conn.cursor()\ncur.execute(\"SELECT * FROM {product} LIMIT 10\")\n\
         print(cur.fetch_arrow_table())\n"
    );
    json!({
        "flight_url": format!("{scheme}://{address}"),
        "adbc_python": python,
        "jdbc_url": format!(
            "jdbc:arrow-flight-sql://{address}?useEncryption={tls}&user={user}&password=..."
        ),
        "sqlalchemy_uri": format!(
            "datafusion+flightsql://{user}:...@{address}{}",
            if tls { "" } else { "?insecure=true" }
        ),
        "sql": format!("SELECT * FROM {product} LIMIT 10"),
    })
}

/// `GET /api/v1/products/{domain}/{name}`: the product page.
pub(crate) async fn product(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((domain, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mesh = state.inner.engine.mesh();
    let (product, access) = visible_product(&mesh, &viewer, &domain, &name)?;
    let m = &product.manifest;
    let qualified = product.qualified_name();
    let columns: Vec<Value> = access
        .columns
        .iter()
        .filter_map(|(c, a)| Some((m.column(c)?, a)))
        .map(|(c, a)| {
            json!({
                "name": c.name,
                "type": c.ty.to_string(),
                "nullable": c.nullable,
                "description": c.description,
                "classification": c.classification,
                "primary_key": c.primary_key,
                "access": match a { ColumnAccess::Clear => "clear", ColumnAccess::Masked(_) => "masked" },
            })
        })
        .collect();
    let primary_key: Vec<&str> = access
        .columns
        .iter()
        .filter_map(|(c, _)| m.column(c))
        .filter(|c| c.primary_key)
        .map(|c| c.name.as_str())
        .collect();
    let restricted = !access.is_unrestricted(m);
    // Freshness and status: what `meshql.products` says to this viewer.
    let freshness_sql = format!(
        "/* meshql-ui: product page */ SELECT data_version, files, \
         CAST(last_modified AS VARCHAR) AS last_modified, sla_met, status, status_detail, \
         at_risk_upstream FROM meshql.products WHERE domain = '{}' AND name = '{}'",
        m.domain, m.name
    );
    let freshness = match run_small(&state, &viewer, &freshness_sql, 1).await {
        Ok((cols, rows)) => rows_as_objects(&cols, rows).into_iter().next(),
        Err(e) => Some(json!({"status": "unavailable", "status_detail": e.to_string()})),
    };
    let status = freshness
        .as_ref()
        .and_then(|f| f["status"].as_str())
        .unwrap_or("unknown")
        .to_string();
    // Quality results and lineage edges, as `meshql.quality` / `meshql.lineage` show them to
    // this viewer (observed values withheld and hidden products left out by the engine).
    let quality_sql = format!(
        "/* meshql-ui: product page */ SELECT rule, type, severity, status, observed, \
         CAST(checked_at AS VARCHAR) AS checked_at, description FROM meshql.quality \
         WHERE domain = '{}' AND product = '{}' ORDER BY rule",
        m.domain, m.name
    );
    let quality = match run_small(&state, &viewer, &quality_sql, MAX_SECTION_ROWS).await {
        Ok((cols, rows)) => json!({"available": true, "results": rows_as_objects(&cols, rows)}),
        Err(e) => json!({"available": false, "results": [], "error": e.to_string()}),
    };
    let lineage_sql = format!(
        "/* meshql-ui: product page */ SELECT product, input FROM meshql.lineage \
         WHERE product = '{qualified}' OR input = '{qualified}' ORDER BY product, input"
    );
    let lineage = match run_small(&state, &viewer, &lineage_sql, MAX_SECTION_ROWS).await {
        Ok((_, rows)) => {
            let (mut upstream, mut downstream) = (Vec::new(), Vec::new());
            for row in rows {
                let (Some(p), Some(i)) = (row[0].as_str(), row[1].as_str()) else {
                    continue;
                };
                if p == qualified {
                    upstream.push(i.to_string());
                } else {
                    downstream.push(p.to_string());
                }
            }
            json!({"available": true, "upstream": upstream, "downstream": downstream})
        }
        Err(e) => {
            json!({"available": false, "upstream": [], "downstream": [], "error": e.to_string()})
        }
    };
    // Deprecation marks of the product and of the columns this viewer can see.
    let deprecated_columns: Vec<Value> = access
        .columns
        .iter()
        .filter_map(|(c, _)| m.column(c))
        .filter_map(|c| {
            let d = c.deprecated.as_ref()?;
            Some(json!({"column": c.name, "message": d.to_string()}))
        })
        .collect();
    let deprecation = json!({
        "available": true,
        "deprecated": m.deprecated.is_some(),
        "message": m.deprecated.as_ref().map(|d| d.to_string()),
        "columns": deprecated_columns,
    });
    let usage = state
        .inner
        .engine
        .product_usage(&viewer.principal, &domain, &name);
    Ok(Json(json!({
        "domain": m.domain,
        "name": m.name,
        "qualified_name": qualified,
        "description": m.description,
        "owner": m.owner,
        "version": m.version,
        "format": m.format.as_str(),
        "tags": m.tags,
        "status": status,
        "contract": {
            "version": m.version,
            "columns": columns,
            "primary_key": primary_key,
        },
        "access": {
            "restricted": restricted,
            "masked_columns": access.columns.iter().filter(|(_, a)| matches!(a, ColumnAccess::Masked(_))).map(|(c, _)| c).collect::<Vec<_>>(),
            "row_filtered": !access.row_filters.is_empty(),
        },
        "sla": {
            "freshness": m.sla.freshness.as_ref().map(|(t, _)| t),
        },
        "freshness": freshness,
        "quality": quality,
        "lineage": lineage,
        "deprecation": deprecation,
        "usage": usage,
        "connect": connect_snippets(&state, &headers, &viewer.principal.user, &qualified),
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PreviewQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/products/{domain}/{name}/preview?limit=20`: the first rows as the viewer sees
/// them (masks and row filters applied by the engine).
pub(crate) async fn preview(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((domain, name)): Path<(String, String)>,
    Query(q): Query<PreviewQuery>,
) -> Result<Json<Value>, ApiError> {
    let mesh = state.inner.engine.mesh();
    let (product, _) = visible_product(&mesh, &viewer, &domain, &name)?;
    let limit = q.limit.unwrap_or(PREVIEW_ROWS).clamp(1, MAX_PREVIEW_ROWS);
    // Names are catalog identifiers (lowercase letters, digits, `_`): safe to quote as is.
    let sql = format!(
        "/* meshql-ui: preview */ SELECT * FROM \"{}\".\"{}\" LIMIT {limit}",
        product.manifest.domain, product.manifest.name
    );
    let (columns, rows) = run_small(&state, &viewer, &sql, limit).await?;
    Ok(Json(json!({
        "product": product.qualified_name(),
        "columns": columns,
        "rows": rows,
        "limit": limit,
    })))
}
