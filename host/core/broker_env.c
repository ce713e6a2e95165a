/*
 * broker_env.c - the plain values an adapter sees (swit_broker_env),
 * copied from the configuration. The core owns which settings an adapter
 * gets; adapters never read swit_config.
 */
#include "core/broker.h"

void swit__broker_env_config(swit_broker_env *env, const swit_config *cfg)
{
  const swit_cfg_publisher *pub = swit__config_publisher(cfg, "default");
  const __typeof__(cfg->messaging.security.transport.tls) *tls =
      &cfg->messaging.security.transport.tls;
  int64_t workers = cfg->messaging.resources.subscribers.worker_pool_size;

  env->server_name = cfg->server.name;
  env->endpoints = (const char *const *)cfg->messaging.broker.endpoints.items;
  env->n_endpoints = cfg->messaging.broker.endpoints.n;
  env->config = &cfg->messaging.broker.config;
  env->max_message_size = cfg->messaging.resources.memory.max_message_size;
  env->publish_timeout_ms = pub ? pub->timeout_ms : 5000;
  env->publish_retry_attempts = pub ? pub->retry_attempts : 3;
  env->shutdown_timeout_ms = cfg->server.shutdown_timeout_ms;
  env->workers = (uint32_t)(workers > 0 ? workers : 1);
  env->reconnect_delay_ms = cfg->messaging.broker.reconnect.delay_ms;
  env->reconnect_max_delay_ms = cfg->messaging.broker.reconnect.max_delay_ms;
  env->reconnect_max_attempts = cfg->messaging.broker.reconnect.max_attempts;
  env->tls = (swit_broker_tls){
      .enabled = tls->enabled, .cert_file = tls->cert_file,
      .key_file = tls->key_file, .ca_file = tls->ca_file,
      .verify_server = tls->verify_server};
  env->mechanism = cfg->messaging.security.authentication.mechanism;
  env->username = cfg->messaging.security.authentication.username;
  env->password = cfg->messaging.security.authentication.password;
}
