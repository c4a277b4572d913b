//! Fixtures shared by meshql's benchmarks: synthetic meshes of a chosen size.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

/// Writes a mesh of `domains` × `products_per_domain` tiny Parquet products (columns `id`,
/// `region`, `email` classified `pii`, `amount`) with `policies` row filters spread over them,
/// a global PII mask, and grants to group `analysts`. Returns the configuration file.
pub fn synthetic_mesh(
    dir: &Path,
    domains: usize,
    products_per_domain: usize,
    policies: usize,
) -> std::io::Result<std::path::PathBuf> {
    let io = |e: parquet::errors::ParquetError| std::io::Error::other(e.to_string());
    let mut config = String::from("[catalog]\ndir = \"catalog\"\n");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..100)),
            Arc::new(StringArray::from_iter_values((0..100).map(|i| {
                if i % 2 == 0 {
                    "EU"
                } else {
                    "NA"
                }
            }))),
            Arc::new(StringArray::from_iter_values(
                (0..100).map(|i| format!("user{i}@example.com")),
            )),
            Arc::new(Float64Array::from_iter_values((0..100).map(|i| i as f64))),
        ],
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut written_policies = 0;
    for d in 0..domains {
        let domain = format!("d{d}");
        let _ = write!(
            config,
            "\n[[domains]]\nname = \"{domain}\"\nbucket = \"buckets/{domain}\"\n"
        );
        let products_dir = dir.join("catalog").join(&domain).join("products");
        fs::create_dir_all(&products_dir)?;
        let mut policies_text =
            "[[grants]]\nto = [\"group:analysts\"]\nproducts = [\"*\"]\n".to_string();
        for p in 0..products_per_domain {
            let name = format!("p{p}");
            fs::write(
                products_dir.join(format!("{name}.toml")),
                format!(
                    "name = \"{name}\"\ndomain = \"{domain}\"\nversion = \"1.0.0\"\nowner = \"o@example.com\"\nformat = \"parquet\"\nlocation = \"{name}\"\n\
                     [[schema]]\nname = \"id\"\ntype = \"bigint\"\nprimary_key = true\n\
                     [[schema]]\nname = \"region\"\ntype = \"string\"\nnullable = false\n\
                     [[schema]]\nname = \"email\"\ntype = \"string\"\nnullable = false\nclassification = \"pii\"\n\
                     [[schema]]\nname = \"amount\"\ntype = \"double\"\nnullable = false\n"
                ),
            )?;
            let data_dir = dir.join("buckets").join(&domain).join(&name);
            fs::create_dir_all(&data_dir)?;
            let file = fs::File::create(data_dir.join("part-0.parquet"))?;
            let mut w = ArrowWriter::try_new(file, Arc::clone(&schema), None).map_err(io)?;
            w.write(&batch).map_err(io)?;
            w.close().map_err(io)?;
        }
        // Spread the row filters over the domains' first products.
        let share = policies / domains + usize::from(d < policies % domains);
        for i in 0..share {
            let _ = write!(
                policies_text,
                "\n[[row_filters]]\nname = \"f{d}_{i}\"\nproduct = \"p{}\"\napplies_to = [\"group:analysts\"]\npredicate = \"region = ${{principal.region}} OR amount > {i}\"\n",
                i % products_per_domain
            );
            written_policies += 1;
        }
        fs::write(
            dir.join("catalog").join(&domain).join("policies.toml"),
            policies_text,
        )?;
    }
    debug_assert_eq!(written_policies, policies);
    fs::create_dir_all(dir.join("catalog/_global"))?;
    fs::write(
        dir.join("catalog/_global/policies.toml"),
        "[[grants]]\nto = [\"group:admin\"]\n\n[[masks]]\nname = \"pii\"\nclassification = \"pii\"\nunless = [\"group:pii_reader\"]\nexpression = \"'***'\"\n",
    )?;
    let path = dir.join("meshql.toml");
    fs::write(&path, config)?;
    Ok(path)
}
