//! Detectors over infrastructure files (Dockerfile, Compose, Kubernetes/Helm, `.env` examples): each a leaf
//! that reads the file's model from `semantic`.

pub mod i4_compose_ports;
pub mod infra_compose;
pub mod infra_dockerfile;
pub mod infra_k8s;
pub mod o3_dotenv;
