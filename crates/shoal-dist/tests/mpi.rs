//! All-reduce over real MPI (feature `mpi`): two ranks of `mpirun`, each with its half of a
//! batch, end up with the parameters of one process on the concatenated batch (≤ 1e-6). The
//! test starts itself again under `mpirun -np 2` and checks that both ranks passed.

mod common;

use std::process::Command;

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use shoal_dist::allreduce::MpiGroup;
use shoal_dist::AllReduce;

use common::{allreduce_step, batch, one_step_on_the_concatenated_batch, q_network};

const NAME: &str = "two_mpi_ranks_equal_one_process_on_the_concatenated_batch";

#[test]
fn two_mpi_ranks_equal_one_process_on_the_concatenated_batch() {
    if std::env::var_os("OMPI_COMM_WORLD_RANK").is_none() {
        let output = Command::new("mpirun")
            .args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
            .output()
            .expect("running mpirun (Debian: apt-get install openmpi-bin)");
        let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "mpirun failed:\n{log}");
        assert_eq!(log.matches("rank matches the concatenated batch").count(), 2, "{log}");
        return;
    }
    let group = MpiGroup::init().unwrap();
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    let model = q_network();
    let halves = [batch(&mut rng, 32), batch(&mut rng, 32)];
    let expected = one_step_on_the_concatenated_batch(&model, &halves[0], &halves[1]);
    let got = allreduce_step(&group, &mut model.clone(), &halves[group.rank()]);
    let worst = got.iter().zip(&expected).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-6, "rank {}: max difference {worst}", group.rank());
    println!(
        "rank {} of {}: rank matches the concatenated batch (max difference {worst:e})",
        group.rank(),
        group.size()
    );
}
