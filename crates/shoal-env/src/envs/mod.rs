//! Built-in environments, each matching its Gymnasium 1.4 reference step for step.

pub mod acrobot;
pub mod cartpole;
pub mod cliff_walking;
pub mod frozen_lake;
pub mod mountain_car;
pub mod pendulum;
pub mod tabular;
pub mod taxi;

pub use acrobot::Acrobot;
pub use cartpole::{CartPole, CartPoleLanes};
pub use cliff_walking::cliff_walking;
pub use frozen_lake::frozen_lake;
pub use mountain_car::{MountainCar, MountainCarContinuous};
pub use pendulum::Pendulum;
pub use tabular::{TabularEnv, TabularModel, Transition};
pub use taxi::Taxi;
