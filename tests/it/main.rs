//! kedai's integration tests: one binary, real application on port 0 with a
//! temporary data directory, spoken to over HTTP.

mod api;
mod channels;
mod chat;
mod cli;
mod durability;
mod embeddings;
mod helpers;
mod kb;
mod models;
mod openai;
mod openapi;
mod orders;
mod pipeline;
mod queue;
mod tokenizer;
mod understand;
mod understand_reload;
