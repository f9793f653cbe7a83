//! What a deploy runs: the two colours, and the components (api, worker, web) each colour has.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    pub fn other(self) -> Self {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Green => "green",
        }
    }

    fn index(self) -> u16 {
        match self {
            Colour::Blue => 0,
            Colour::Green => 1,
        }
    }
}

/// A component the deploy runs per colour (the operator's docs call it a role of the binary).
/// A new component is one more entry in [`COMPONENTS`].
#[derive(Debug, Clone, Copy)]
pub struct Component {
    pub name: &'static str,
    /// The `ghostworks` subcommand that runs it.
    pub command: &'static str,
    /// The environment variable that takes its listen address.
    pub bind_var: &'static str,
    /// Added to the colour's base port.
    pub port_offset: u16,
    /// 200 once the instance can take work.
    pub ready_path: &'static str,
    /// The `ghostworks` arguments that check its configuration without starting it.
    pub check_args: &'static [&'static str],
    /// The nginx upstream that routes traffic to it (`upstream-NAME.conf`); its golden signals
    /// gate the bake. `None`: no traffic comes through nginx.
    pub upstream: Option<&'static str>,
    /// Environment variables set to the base URL of another component of the same colour: a
    /// colour talks only to itself, so a release never calls an older or newer API.
    pub links: &'static [(&'static str, &'static str)],
}

pub const COMPONENTS: &[Component] = &[
    Component {
        name: "api",
        command: "serve",
        bind_var: "GHOSTWORKS_BIND",
        port_offset: 0,
        ready_path: "/health/ready",
        check_args: &["config", "check"],
        upstream: Some("api"),
        links: &[],
    },
    Component {
        name: "worker",
        command: "worker",
        bind_var: "WORKER_BIND",
        port_offset: 10,
        ready_path: "/health",
        check_args: &["config", "check", "--worker"],
        upstream: None,
        links: &[],
    },
    Component {
        name: "web",
        command: "web",
        bind_var: "WEB_BIND",
        port_offset: 20,
        // Ready once it reaches its colour's API.
        ready_path: "/health/ready",
        check_args: &["config", "check", "--web"],
        upstream: Some("web"),
        links: &[("API_URL", "api")],
    },
];

/// The component named `name`.
pub fn component(name: &str) -> &'static Component {
    COMPONENTS
        .iter()
        .find(|c| c.name == name)
        .expect("a component of COMPONENTS")
}

/// The names of the components, for messages.
pub fn names() -> String {
    COMPONENTS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The upstreams nginx routes to, and the components behind each.
pub fn upstreams() -> impl Iterator<Item = (&'static str, &'static Component)> {
    COMPONENTS.iter().filter_map(|c| Some((c.upstream?, c)))
}

/// The port of `component` in `colour` (blue on the base port, green one above).
pub fn port(base: u16, colour: Colour, component: &Component) -> u16 {
    base + component.port_offset + colour.index()
}

/// Where a colour's instances answer.
#[derive(Debug, Clone)]
pub struct Instance {
    pub component: Component,
    pub base_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_alternate_and_ports_do_not_collide() {
        assert_eq!(Colour::Blue.other(), Colour::Green);
        let ports: std::collections::BTreeSet<u16> = [Colour::Blue, Colour::Green]
            .iter()
            .flat_map(|c| COMPONENTS.iter().map(move |r| port(8100, *c, r)))
            .collect();
        assert_eq!(ports.len(), 2 * COMPONENTS.len());
    }
}
