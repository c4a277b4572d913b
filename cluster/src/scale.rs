//! Spreading a secured product read over several tasks.
//!
//! datafusion-distributed splits plain file scans across tasks by itself, but a policy barrier
//! is a leaf it cannot look into. These handlers give it the same treatment: the barrier's
//! file scan is split into one slice of files per task, and each task gets its own barrier
//! around the same secured plan over its slice — row filter and masks included, so every task
//! applies the policies to exactly its share of the rows.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::{FileGroup, FileGroupPartitioner, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion_distributed::{
    DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedConfig, DistributedLeafExec,
    ScaleUpLeafNodeEvent, ScaleUpLeafNodeEventResponse,
};
use meshql_engine::PolicyExec;

use crate::delta::DeltaScanShim;

/// The only file scan inside a barrier's secured plan, if it has exactly one.
fn single_file_scan(inner: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let mut found: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
    let mut other_leaf = false;
    let _ = inner.apply(|node| {
        if node.children().is_empty() {
            match node
                .downcast_ref::<DataSourceExec>()
                .and_then(|d| d.data_source().downcast_ref::<FileScanConfig>().map(|_| ()))
            {
                Some(()) => found.push(Arc::clone(node)),
                None => other_leaf = true,
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match (found.len(), other_leaf) {
        (1, false) => found.pop(),
        _ => None,
    }
}

/// True when `plan` holds a Delta scan applying deletion vectors: such a scan needs each file
/// whole in one stream, so it cannot be split between tasks.
fn has_deletion_vectors(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        found |= node
            .downcast_ref::<DeltaScanShim>()
            .is_some_and(DeltaScanShim::has_deletion_vectors);
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// How many tasks a barrier's read is worth: like a plain file scan, by bytes. A Delta scan
/// with deletion vectors (barrier or not) runs as one task.
pub(crate) fn policy_desired_task_count(
    ev: DesiredTaskCountEvent,
) -> Option<Result<DesiredTaskCountEventResponse>> {
    if let Some(delta) = ev.plan.downcast_ref::<DeltaScanShim>() {
        return delta
            .has_deletion_vectors()
            .then(|| Ok(DesiredTaskCountEventResponse::maximum(1)));
    }
    let policy = ev.plan.downcast_ref::<PolicyExec>()?;
    let Some(scan) = single_file_scan(policy.inner()) else {
        return Some(Ok(DesiredTaskCountEventResponse::maximum(1)));
    };
    if has_deletion_vectors(policy.inner()) {
        return Some(Ok(DesiredTaskCountEventResponse::maximum(1)));
    }
    let config = scan
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()?;
    let d_cfg = DistributedConfig::from_session_config(ev.session_config).ok()?;
    let bytes: usize = config
        .file_groups
        .iter()
        .flat_map(|g| g.files())
        .map(|f| f.effective_size() as usize)
        .sum();
    let tasks = bytes
        .div_ceil(d_cfg.file_scan_config_bytes_per_partition.max(1))
        .div_ceil(ev.session_config.target_partitions().max(1));
    Some(Ok(DesiredTaskCountEventResponse::desired(tasks.max(1))))
}

/// One barrier per task, each around the secured plan over its slice of the files.
pub(crate) fn policy_scale_up(
    ev: ScaleUpLeafNodeEvent,
) -> Option<Result<ScaleUpLeafNodeEventResponse>> {
    let policy = ev.plan.downcast_ref::<PolicyExec>()?;
    if ev.task_count <= 1 {
        return None;
    }
    let scan = single_file_scan(policy.inner())?;
    let config = scan
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()?;
    let slices = split_files(
        config,
        scan.output_partitioning().partition_count(),
        ev.task_count,
    );
    let variants = slices.into_iter().map(|slice| {
        let slice: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(slice);
        let inner = Arc::clone(policy.inner()).transform_up(|node| {
            Ok(if Arc::ptr_eq(&node, &scan) {
                Transformed::yes(Arc::clone(&slice))
            } else {
                Transformed::no(node)
            })
        })?;
        Ok(
            Arc::new(PolicyExec::new(policy.product().to_string(), inner.data))
                as Arc<dyn ExecutionPlan>,
        )
    });
    let variants = match variants.collect::<Result<Vec<_>>>() {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    Some(
        DistributedLeafExec::try_new(Arc::clone(ev.plan), variants).map(|leaf| {
            ScaleUpLeafNodeEventResponse::new(Arc::new(leaf) as Arc<dyn ExecutionPlan>)
        }),
    )
}

/// Splits a scan's files into `tasks` scans of exactly `partitions` file groups each (empty
/// groups pad a short slice, so every task's plan has the same shape).
fn split_files(config: &FileScanConfig, partitions: usize, tasks: usize) -> Vec<FileScanConfig> {
    let partitions = partitions.max(1);
    let target = partitions * tasks;
    let groups: Vec<FileGroup> = if config.output_ordering.is_empty() {
        FileGroupPartitioner::new()
            .with_target_partitions(target)
            .with_repartition_file_min_size(0)
            .repartition_file_groups(&config.file_groups)
            .unwrap_or_else(|| config.file_groups.clone())
    } else {
        config.file_groups.clone()
    };
    let mut template = config.clone();
    template.file_groups.clear();
    let mut out = vec![template; tasks];
    // Whole groups round-robin over the tasks, then each task is brought to `partitions`
    // groups: merging its smallest neighbours when it has too many, padding when too few.
    for (i, g) in groups.into_iter().enumerate() {
        out[i % tasks].file_groups.push(g);
    }
    for scan in &mut out {
        while scan.file_groups.len() > partitions {
            if let (Some(last), Some(prev)) = (scan.file_groups.pop(), scan.file_groups.last_mut())
            {
                let mut files: Vec<_> = prev.files().to_vec();
                files.extend(last.files().iter().cloned());
                *prev = FileGroup::new(files);
            }
        }
        while scan.file_groups.len() < partitions {
            scan.file_groups.push(FileGroup::new(Vec::new()));
        }
    }
    out
}
