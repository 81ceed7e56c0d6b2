-- What an order-status answer needs beyond the first schema: where the
-- parcel goes and when the carrier expects to deliver it.
ALTER TABLE orders ADD COLUMN destination TEXT;
ALTER TABLE orders ADD COLUMN expected_delivery TEXT;
CREATE INDEX orders_shop_placed ON orders(shop_id, placed_at DESC);
