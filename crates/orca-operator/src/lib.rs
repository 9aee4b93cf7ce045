//! orca's Kubernetes operator: the `Agent` and `Task` custom resources
//! (group `orca.dev`, version `v1alpha1`), the objects an `Agent` owns, and
//! the decision of how many worker pods a pool needs.

pub mod crd;
pub mod scaling;
pub mod status;
pub mod workers;

pub use crd::{Agent, AgentSpec, AgentStatus, OrcaTask, OrcaTaskSpec, OrcaTaskStatus};

/// The CustomResourceDefinitions, as `kubectl apply` takes them: one YAML
/// document each, in a stable order.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let mut out = String::new();
    for crd in [Agent::crd(), OrcaTask::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// `crds/` is what `kubectl apply -f crds/` and the chart install; it must
    /// be what these types say.
    #[test]
    fn crds_dir_matches_the_types() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/orca.dev.yaml");
        let generated = super::crds_yaml().expect("serializes");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date with the CRD types: run `make crds`",
            path.display()
        );
    }

    #[test]
    fn crds_carry_scale_printer_columns_and_validation() {
        let yaml = super::crds_yaml().expect("serializes");
        for needle in [
            "specReplicasPath: .spec.replicas",
            "jsonPath: .status.phase",
            "jsonPath: .status.readyReplicas",
            "self.minReplicas <= self.maxReplicas",
            "ttlSecondsAfterFinished",
            "dependsOn",
            "maximum: 1024",
        ] {
            assert!(yaml.contains(needle), "the CRDs lack {needle}");
        }
    }
}
