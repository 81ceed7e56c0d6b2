//! Quantized matmul kernels on the weight shapes of the bundled chat models:
//! one token (decode: a matrix-vector product, bound by memory) and a
//! 64-token prompt chunk (prefill: bound by arithmetic), for each instruction
//! set this CPU has. Weights are random values quantized by candle into the
//! same block formats the GGUF files use; throughput is in multiply-adds.
//!
//! `cargo bench --bench qmatmul`; `RAYON_NUM_THREADS` sets the threads.

use std::hint::black_box;
use std::time::Duration;

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kedai::inference::kernels::{Isa, QMatrix, QuantType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (name, format, output rows, input columns).
const SHAPES: [(&str, QuantType, usize, usize); 5] = [
    ("qwen_gate_up", QuantType::Q5_0, 9728, 896),
    ("qwen_down_q6k", QuantType::Q6K, 896, 4864),
    ("qwen_down_q4k", QuantType::Q4K, 896, 4864),
    ("qwen_attn_v", QuantType::Q8_0, 128, 896),
    ("smollm2_gate_up", QuantType::Q4_1, 3072, 576),
];

fn matrix(ty: QuantType, rows: usize, cols: usize) -> QMatrix {
    let mut rng = StdRng::seed_from_u64(1);
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random_range(-1.0..1.0f32))
        .collect();
    let tensor = Tensor::from_vec(values, (rows, cols), &Device::Cpu).expect("tensor");
    let q = QTensor::quantize(&tensor, ty.to_ggml()).expect("quantized");
    QMatrix::new(ty, rows, cols, q.data().expect("bytes").into_owned()).expect("matrix")
}

/// The layouts to time: rows as in the file, and packed eight at a time
/// where the format and this CPU allow.
fn layouts(ty: QuantType, rows: usize, cols: usize) -> Vec<(&'static str, QMatrix)> {
    let rowwise = matrix(ty, rows, cols);
    let packed = rowwise.clone().with_packed();
    let mut layouts = vec![("rows", rowwise)];
    if packed.is_packed() {
        layouts.push(("packed", packed));
    }
    layouts
}

fn kernels(c: &mut Criterion) {
    let isas: Vec<Isa> = [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni]
        .into_iter()
        .filter(|isa| *isa <= Isa::detect())
        .collect();
    for (name, ty, rows, cols) in SHAPES {
        let mut group = c.benchmark_group(name);
        group.measurement_time(Duration::from_secs(3));
        group.warm_up_time(Duration::from_millis(500));
        for m in [1, 64] {
            let mut rng = StdRng::seed_from_u64(2);
            let x: Vec<f32> = (0..m * cols)
                .map(|_| rng.random_range(-2.0..2.0f32))
                .collect();
            let mut out = vec![0f32; m * rows];
            group.throughput(Throughput::Elements((m * rows * cols) as u64));
            for (layout, w) in layouts(ty, rows, cols) {
                for &isa in &isas {
                    if isa == Isa::Scalar && m > 1 {
                        continue;
                    }
                    let id = BenchmarkId::new(format!("{layout}/{isa:?}"), m);
                    group.bench_with_input(id, &m, |b, &m| {
                        b.iter(|| w.matmul_with(isa, black_box(&x), m, &mut out))
                    });
                }
            }
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
