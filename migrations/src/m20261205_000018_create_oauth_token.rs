use sea_orm_migration::prelude::*;

use crate::exact_text;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `oauth_token`: the access tokens `POST /oauth2/token` issues, shared by
/// every replica so any of them can introspect or revoke a token another
/// issued. A token is kept only as its SHA-256 (hex): it is 256 random
/// bits, so a digest needs no salt or stretching, and a copy of the table
/// signs nobody in. Each row is bound to the login that made it: the app
/// password, the protocol, the client address and the OAuth client.
/// Deleted with its password; expired rows are pruned by housekeeping.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthToken::Table)
                    .col(exact_text(manager, OauthToken::Digest, 64).primary_key())
                    .col(ColumnDef::new(OauthToken::AppPasswordId).uuid().not_null())
                    .col(ColumnDef::new(OauthToken::Protocol).integer().not_null())
                    .col(exact_text(manager, OauthToken::ClientIp, 45))
                    .col(exact_text(manager, OauthToken::ClientId, 64))
                    .col(
                        ColumnDef::new(OauthToken::IssuedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OauthToken::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth_token_app_password")
                            .from(OauthToken::Table, OauthToken::AppPasswordId)
                            .to(AppPassword::Table, AppPassword::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The bound on a password's live tokens: its newest, in order.
        manager
            .create_index(
                Index::create()
                    .name("ix_oauth_token_app_password")
                    .table(OauthToken::Table)
                    .col(OauthToken::AppPasswordId)
                    .col(OauthToken::IssuedAt)
                    .to_owned(),
            )
            .await?;
        // Housekeeping's prune of expired tokens.
        manager
            .create_index(
                Index::create()
                    .name("ix_oauth_token_expires")
                    .table(OauthToken::Table)
                    .col(OauthToken::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OauthToken::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum OauthToken {
    Table,
    Digest,
    AppPasswordId,
    Protocol,
    ClientIp,
    ClientId,
    IssuedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AppPassword {
    Table,
    Id,
}
