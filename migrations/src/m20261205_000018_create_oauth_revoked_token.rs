use sea_orm_migration::prelude::*;

use crate::exact_text;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `oauth_revoked_token`: the access tokens of `POST /oauth2/token` their
/// client revoked (RFC 7009) before they expired, so every replica treats
/// them as inactive. Tokens themselves are sealed and stored nowhere; a
/// revoked one is kept only as its SHA-256 (hex), until it would have
/// expired (housekeeping deletes it then), and goes with its password.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthRevokedToken::Table)
                    .col(exact_text(manager, OauthRevokedToken::Digest, 64).primary_key())
                    .col(
                        ColumnDef::new(OauthRevokedToken::AppPasswordId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OauthRevokedToken::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth_revoked_token_app_password")
                            .from(OauthRevokedToken::Table, OauthRevokedToken::AppPasswordId)
                            .to(AppPassword::Table, AppPassword::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Housekeeping's prune of what expired.
        manager
            .create_index(
                Index::create()
                    .name("ix_oauth_revoked_token_expires")
                    .table(OauthRevokedToken::Table)
                    .col(OauthRevokedToken::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OauthRevokedToken::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum OauthRevokedToken {
    Table,
    Digest,
    AppPasswordId,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AppPassword {
    Table,
    Id,
}
