//! `sentinel availability`: data availability per stack outlet and Beijing month, from a running server.

use super::feed;
use super::table;
use crate::pb;
use crate::pb::enforcement_service_client::EnforcementServiceClient;

/// `sentinel availability` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AvailabilityArgs {
    /// Every stack outlet of these enterprises (repeatable).
    #[arg(long = "enterprise")]
    enterprises: Vec<String>,
    /// These stack outlets (repeatable).
    #[arg(long = "outlet")]
    outlets: Vec<String>,
    /// First month, YYYY-MM (Beijing time); default: each outlet's latest month of data.
    #[arg(long)]
    from: Option<String>,
    /// Last month, inclusive (default: --from); at most 12 months.
    #[arg(long)]
    to: Option<String>,
}

impl AvailabilityArgs {
    /// Prints the availability table of `server`.
    ///
    /// # Errors
    /// A failed call (an unknown outlet, a bad month).
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        let channel = feed::connect(server).await?;
        let months = EnforcementServiceClient::new(channel)
            .get_data_availability(pb::GetDataAvailabilityRequest {
                outlet_ids: self.outlets,
                enterprise_ids: self.enterprises,
                from_month: self.from.unwrap_or_default(),
                to_month: self.to.unwrap_or_default(),
            })
            .await?
            .into_inner()
            .months;
        print!("{}", render(&months));
        Ok(())
    }
}

/// The table: one row per outlet and month.
pub fn render(months: &[pb::OutletMonthAvailability]) -> String {
    let rows: Vec<Vec<String>> = months
        .iter()
        .map(|m| {
            vec![
                m.outlet_id.clone(),
                m.month.clone(),
                m.production_minutes.to_string(),
                m.valid_minutes.to_string(),
                format!("{:.1} %", 100.0 * m.transmission_rate),
                m.outages.to_string(),
                m.longest_outage_min.to_string(),
            ]
        })
        .collect();
    table::render(
        &[
            "outlet",
            "month",
            "production min",
            "valid min",
            "transmission",
            "outages",
            "longest min",
        ],
        &rows,
    )
}
