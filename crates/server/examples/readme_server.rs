//! A payment webhook reports a purchase to GA4 (the README's server example).
use tally_core::{Amount, ContextEnvelope, Currency, Item};
use tally_server::{Ga4Config, PurchaseInput, ServerTracker};

/// An order as the shop stored it at checkout, with the browser's `exportContext()`.
struct Order {
    id: String,
    context: String,
}

/// A secret from the environment; a missing one is named.
fn secret(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("the environment variable {name} is not set"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new("G-ABC123", secret("GA4_API_SECRET")?).validate(true)) // validate: GA4 checks, records nothing
        .build()?; // configuration mistakes fail here, saying what to fix

    // In the payment webhook, with the envelope stored on the order:
    let order = Order { id: "ORD-1001".into(), context: r#"{"v":1,"createdAt":1,"clientId":"123.456"}"#.into() };
    let envelope = ContextEnvelope::parse(&order.context)?;
    let result = tracker
        .from_context(&envelope)
        .track_purchase(
            PurchaseInput::new(&order.id, Amount::parse("30.03")?, Currency::parse("EUR")?)
                .item(Item::new("SKU-204", "Merino runner").with_price(Amount::parse("30.03")?, 1)),
        )
        .await?;
    for (destination, outcome) in &result.destinations {
        println!("{destination}: {outcome}"); // sent / failed: … / skipped: duplicate …
    }
    Ok(())
}
