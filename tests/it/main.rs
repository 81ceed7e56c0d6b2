//! kedai's integration tests: one binary, real application on port 0 with a
//! temporary data directory, spoken to over HTTP.

mod access;
mod api;
mod browser;
mod channels;
mod chaos;
mod chat;
mod cli;
mod durability;
mod embeddings;
mod fairness;
mod helpers;
mod kb;
mod learning;
mod learning_browser;
mod learning_faq;
mod learning_resume;
mod models;
mod openai;
mod openapi;
mod orders;
mod otel;
mod pipeline;
mod queue;
mod redteam;
mod replay;
mod replica_kill;
mod replicas;
mod reports;
mod roles;
mod stand_in;
mod tokenizer;
mod understand;
mod understand_reload;
mod web;
mod web_pages;
