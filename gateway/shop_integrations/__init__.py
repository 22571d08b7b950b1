"""Shop integrations: Shopify and WooCommerce order and customer webhooks, received by the
gateway (the only public entry point), verified, mapped onto the orders and contacts APIs and
posted to those services, which own the data. docs/integrations.md tells the whole story."""
